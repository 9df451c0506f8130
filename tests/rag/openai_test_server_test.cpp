// The OpenAI-compatible test server: streamed answers as server-sent events
// with usage, deterministic seeded faults, the API key check, embeddings of the
// requested dimension, and the sage-openai-test-server command.
#include <gtest/gtest.h>
#include <httplib.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sage/rag.hpp>

#include "rag/openai_test_server.hpp"
#include "support/child_process.hpp"

namespace sage::rag {
namespace {

using json = nlohmann::json;

httplib::Result post(int port, const std::string& path, const json& body,
                     const httplib::Headers& headers = {}) {
  httplib::Client client("127.0.0.1", port);
  return client.Post(path, headers, body.dump(), "application/json");
}

json chat(const std::string& question, bool stream = false) {
  return {{"model", "m"},
          {"stream", stream},
          {"stream_options", {{"include_usage", true}}},
          {"messages",
           {{{"role", "system"},
             {"content",
              "Answer.\nRelevant corpus for the current question:\nsage runs dataflows "
              "on a cluster of machines\nsecond hit"}},
            {{"role", "user"}, {"content", "Question: " + question}}}}};
}

TEST(OpenAITestServer, StreamsTheAnswerAsServerSentEventsWithUsage) {
  OpenAITestServer server;
  const auto result = post(server.port(), "/v1/chat/completions", chat("what is sage?", true));
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->get_header_value("Content-Type"), "text/event-stream");
  std::string text, last;
  json usage;
  std::size_t at = 0;
  while ((at = result->body.find("data: ", at)) != std::string::npos) {
    const auto end = result->body.find("\n\n", at);
    last = result->body.substr(at + 6, end - at - 6);
    at = end;
    if (last == "[DONE]") break;
    const json chunk = json::parse(last);
    if (chunk.contains("usage")) usage = chunk["usage"];
    for (const json& choice : chunk["choices"]) {
      if (choice["delta"].contains("content"))
        text += choice["delta"]["content"].get<std::string>();
    }
  }
  EXPECT_EQ(last, "[DONE]");
  const std::string expected =
      OpenAITestServer::answer_for("what is sage?", "sage runs dataflows on a cluster");
  EXPECT_EQ(text, expected);
  EXPECT_EQ(usage["completion_tokens"], OpenAITestServer::count_tokens(expected));
  EXPECT_EQ(usage["prompt_tokens"], 17 + 4);  // the system message, "Question: what is sage?"
}

TEST(OpenAITestServer, DrawsTheSameFaultsForTheSameSeedAndRequests) {
  const auto faults = [](std::uint64_t seed) {
    OpenAITestServer server(
        OpenAITestServerOptions{.seed = seed, .rate_429 = 0.3, .rate_500 = 0.2});
    std::vector<int> statuses;
    for (int i = 0; i < 40; ++i)
      statuses.push_back(
          post(server.port(), "/v1/chat/completions", chat("q" + std::to_string(i)))->status);
    return statuses;
  };
  const auto first = faults(3);
  EXPECT_EQ(first, faults(3));
  EXPECT_NE(first, faults(4));
  std::map<int, int> counts;
  for (int status : first) ++counts[status];
  EXPECT_GT(counts[429], 0);
  EXPECT_GT(counts[500], 0);
  EXPECT_GT(counts[200], 0);
}

TEST(OpenAITestServer, ChecksTheApiKeyAndEmbedsAtTheAskedDimension) {
  OpenAITestServer server(OpenAITestServerOptions{.api_key = "k"});
  const json body{{"model", "e"}, {"input", {"alpha", "beta"}}, {"dimensions", 64}};
  EXPECT_EQ(post(server.port(), "/v1/embeddings", body)->status, 401);
  const auto result = post(server.port(), "/v1/embeddings", body, {{"Authorization", "Bearer k"}});
  ASSERT_EQ(result->status, 200);
  const json response = json::parse(result->body);
  ASSERT_EQ(response["data"].size(), 2u);
  EXPECT_EQ(response["data"][1]["embedding"].get<std::vector<float>>(), hash_embed("beta", 64));
  EXPECT_EQ(response["usage"]["prompt_tokens"], 2);
}

TEST(OpenAITestServer, TheCommandPrintsItsPortAndServes) {
  testing::ChildProcess server({SAGE_OPENAI_TEST_SERVER_BINARY, "--port", "0"}, {});
  ASSERT_TRUE(server.wait_for_output("\n", std::chrono::seconds(30))) << server.output();
  const int port = std::stoi(server.output());
  const auto result = post(port, "/v1/chat/completions", chat("hello?"));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(json::parse(result->body)["choices"][0]["message"]["content"],
            OpenAITestServer::answer_for("hello?", "sage runs dataflows on a cluster"));
  ::kill(server.pid(), SIGTERM);
  EXPECT_TRUE(server.wait(std::chrono::seconds(30))) << "it stops on SIGTERM";
  EXPECT_EQ(server.exit_code(), 0);

  testing::ChildProcess wrong({SAGE_OPENAI_TEST_SERVER_BINARY, "--rate-429", "lots"}, {});
  ASSERT_TRUE(wrong.wait(std::chrono::seconds(30)));
  EXPECT_EQ(wrong.exit_code(), 2);
  EXPECT_NE(wrong.output().find("--rate-429 needs a number, not 'lots'"), std::string::npos)
      << wrong.output();
}

}  // namespace
}  // namespace sage::rag
