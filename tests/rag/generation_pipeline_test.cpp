// OpenAIGenerator in LocalEnvironment jobs, on the engine's asynchronous map,
// against the OpenAI-compatible test server: with 10 % 429s and 5 % 500s
// injected, every query is answered exactly once with its own answer and
// usage, and a query that is a chunk's text finds that chunk first; one
// instance keeps max_in_flight requests open at once; a request that still
// fails after its retries fails the job with the status and the message, or
// goes to the error output in its place; streamed answers keep the order.
#include <gtest/gtest.h>

#include <algorithm>
#include <compare>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <sage/rag.hpp>
#include <sage/sage.hpp>

#include "rag/openai_test_server.hpp"
#include "support/collect.hpp"
#include "support/temp_dir.hpp"

namespace sage::rag {
namespace {

using namespace std::chrono_literals;

// What the test checks of an answer.
struct Row {
  std::string query;
  std::string text;
  std::string first_hit;
  std::int64_t completion_tokens = 0;
  bool has_prompt_tokens = false;
  SAGE_FIELDS(query, text, first_hit, completion_tokens, has_prompt_tokens)
  auto operator<=>(const Row&) const = default;
};

std::vector<Document> documents() {
  std::vector<Document> docs;
  for (int d = 0; d < 10; ++d) {
    std::string text;
    for (int w = 0; w < 50; ++w) text += "word" + std::to_string(d * 100 + w) + " ";
    docs.push_back(Document{.id = "doc" + std::to_string(d), .text = text});
  }
  return docs;
}

const ChunkerConfig kChunking{.size = 90, .overlap = 20};

std::string first_words(const std::string& text, std::size_t count) {
  std::istringstream in(text);
  std::string result;
  std::string word;
  for (std::size_t i = 0; i < count && in >> word; ++i) result += (i == 0 ? "" : " ") + word;
  return result;
}

GeneratorConfig config_for(const OpenAITestServer& server) {
  return GeneratorConfig{.model = "test-model",
                         .base_url = server.base_url(),
                         .max_retries = 10,
                         .backoff_initial = 10ms,
                         .backoff_max = 100ms};
}

TEST(RagGeneration, EveryQueryIsAnsweredOnceWithItsOwnAnswerDespite429sAnd500s) {
  testing::TempDir dir;
  {
    LocalEnvironment env("rag-ingest");
    env.from_collection(documents())
        .flat_map<Chunker>(Options{.name = "chunker"}, kChunking)
        .map<HashEmbedder>(Options{.name = "embedder", .parallelism = 2}, HashEmbedderConfig{})
        .sink<IndexWriter>(Options{.name = "writer", .parallelism = 2},
                           IndexWriterConfig{.collection = dir.path()});
    env.execute();
  }
  std::vector<std::string> queries;
  std::vector<Row> expected;
  for (const Document& document : documents()) {
    for (const Chunk& chunk : Chunker(kChunking).split(document)) {
      queries.push_back(chunk.text);
      const std::string text = OpenAITestServer::answer_for(chunk.text, first_words(chunk.text, 6));
      expected.push_back(Row{.query = chunk.text,
                             .text = text,
                             .first_hit = chunk.id,
                             .completion_tokens = OpenAITestServer::count_tokens(text),
                             .has_prompt_tokens = true});
    }
  }
  std::sort(expected.begin(), expected.end());

  OpenAITestServer server(
      OpenAITestServerOptions{.seed = 11, .rate_429 = 0.10, .rate_500 = 0.05, .retry_after_ms = 5});
  auto answered = std::make_shared<testing::Collected<Row>>();
  LocalEnvironment env("rag-generate");
  env.from_collection(queries)
      .map<Retriever>(Options{.name = "retriever", .parallelism = 2},
                      RetrieverConfig{.collection = dir.path(), .top_k = 3})
      .map<Promptor>(Options{.name = "promptor"})
      .map<OpenAIGenerator>(Options{.name = "generator", .parallelism = 2}, config_for(server))
      .map([](const Answer& answer) {
        return Row{.query = answer.query,
                   .text = answer.text,
                   .first_hit = answer.hits.empty() ? "" : answer.hits[0].id,
                   .completion_tokens = answer.completion_tokens,
                   .has_prompt_tokens = answer.prompt_tokens > 0};
      })
      .sink<testing::CollectSink<Row>>(answered);
  env.execute();
  EXPECT_EQ(answered->sorted(), expected);

  int status_429 = 0, status_500 = 0;
  for (const auto& entry : server.requests()) {
    status_429 += entry.status == 429;
    status_500 += entry.status == 500;
  }
  EXPECT_GT(status_429, 0);
  EXPECT_GT(status_500, 0);
  EXPECT_EQ(server.requests().size(), queries.size() + status_429 + status_500);
}

TEST(RagGeneration, OneInstanceKeepsMaxInFlightRequestsOpenAtOnce) {
  OpenAITestServer server(OpenAITestServerOptions{.hold_until_concurrent = 32});
  std::vector<Prompt> prompts;
  for (int i = 0; i < 96; ++i) {
    prompts.push_back(Prompt{.query = "q" + std::to_string(i),
                             .messages = {Message{"user", "Question: q" + std::to_string(i)}}});
  }
  auto answered = std::make_shared<testing::Collected<std::string>>();
  LocalEnvironment env("rag-in-flight");
  env.from_collection(prompts)
      .map<OpenAIGenerator>(Options{.name = "generator"}, config_for(server))
      .map([](const Answer& answer) { return answer.query; })
      .sink<testing::CollectSink<std::string>>(answered);
  env.execute();
  EXPECT_EQ(answered->sorted().size(), prompts.size());
  EXPECT_EQ(server.peak_concurrent(), 32);
}

TEST(RagGeneration, ARequestThatStillFailsFailsTheJobWithTheStatusAndMessage) {
  OpenAITestServer server(OpenAITestServerOptions{
      .script = [](const OpenAITestRequest&) { return OpenAITestFault::server_error; }});
  GeneratorConfig config = config_for(server);
  config.max_retries = 1;
  LocalEnvironment env("rag-failing");
  env.from_collection(
         std::vector<Prompt>{Prompt{.query = "q", .messages = {Message{"user", "Question: q"}}}})
      .map<OpenAIGenerator>(Options{.name = "generator"}, config)
      .sink([](const Answer&) {});
  try {
    env.execute();
    FAIL() << "the job succeeded";
  } catch (const JobFailedError& e) {
    EXPECT_NE(std::string(e.what()).find("POST " + server.base_url() +
                                         "/chat/completions failed: HTTP 500: The server had an "
                                         "error"),
              std::string::npos)
        << e.what();
  }
}

std::vector<Prompt> numbered_prompts(int count) {
  std::vector<Prompt> prompts;
  for (int i = 0; i < count; ++i) {
    prompts.push_back(Prompt{.query = "q" + std::to_string(i),
                             .messages = {Message{"user", "Question: q" + std::to_string(i)}}});
  }
  return prompts;
}

// The answers of a job over `prompts`, in the order the sink got them.
std::vector<Answer> answers_of(const std::vector<Prompt>& prompts, const GeneratorConfig& config) {
  auto answers = std::make_shared<std::vector<Answer>>();
  LocalEnvironment env("rag-answers");
  env.from_collection(prompts)
      .map<OpenAIGenerator>(Options{.name = "generator"}, config)
      .sink([answers](const Answer& answer) { answers->push_back(answer); });
  env.execute();
  return *answers;
}

// Every third query's first attempt is dropped mid-stream, so answers complete out of order.
OpenAITestServerOptions drop_every_third(OpenAITestServerOptions options) {
  options.script = [](const OpenAITestRequest& request) {
    return request.attempt == 0 && std::stoi(request.key.substr(1)) % 3 == 0
               ? OpenAITestFault::drop
               : OpenAITestFault::none;
  };
  return options;
}

TEST(RagGeneration, StreamedAnswersKeepTheInputOrderWhenOrdered) {
  OpenAITestServer server(drop_every_third(OpenAITestServerOptions{.token_delay = 2ms}));
  GeneratorConfig config = config_for(server);
  config.stream = true;
  const auto prompts = numbered_prompts(60);
  const auto answers = answers_of(prompts, config);
  ASSERT_EQ(answers.size(), prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(answers[i].query, prompts[i].query) << "answer " << i << " is out of order";
    EXPECT_EQ(answers[i].text, OpenAITestServer::answer_for(prompts[i].query, ""));
    EXPECT_GT(answers[i].completion_tokens, 0);
    EXPECT_LE(answers[i].time_to_first_token_s, answers[i].latency_s);
  }
}

TEST(RagGeneration, StreamedAnswersComeOnceEachWhenUnordered) {
  OpenAITestServer server(drop_every_third(OpenAITestServerOptions{.token_delay = 2ms}));
  GeneratorConfig config = config_for(server);
  config.stream = true;
  config.ordered = false;
  const auto prompts = numbered_prompts(60);
  std::vector<std::string> expected, got;
  for (const Prompt& prompt : prompts)
    expected.push_back(OpenAITestServer::answer_for(prompt.query, ""));
  for (const Answer& answer : answers_of(prompts, config)) got.push_back(answer.text);
  std::sort(expected.begin(), expected.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, expected);
}

TEST(RagGeneration, AFailedRequestGoesToTheErrorOutputInItsPlace) {
  // q3 and q7 fail on every attempt.
  OpenAITestServerOptions options;
  options.script = [](const OpenAITestRequest& request) {
    return request.key == "q3" || request.key == "q7" ? OpenAITestFault::server_error
                                                      : OpenAITestFault::none;
  };
  OpenAITestServer server(options);
  GeneratorConfig config = config_for(server);
  config.max_retries = 1;
  config.on_failure = OnFailure::emit_error;
  const auto prompts = numbered_prompts(12);
  const auto answers = answers_of(prompts, config);  // the job does not fail
  ASSERT_EQ(answers.size(), prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(answers[i].query, prompts[i].query) << "answer " << i << " is out of order";
    if (i == 3 || i == 7) {
      EXPECT_TRUE(answers[i].text.empty());
      EXPECT_EQ(answers[i].error_status, 500);
      EXPECT_NE(answers[i].error.find("POST " + server.base_url() +
                                      "/chat/completions failed: HTTP 500: The server had an "
                                      "error"),
                std::string::npos)
          << answers[i].error;
    } else {
      EXPECT_EQ(answers[i].text, OpenAITestServer::answer_for(prompts[i].query, ""));
      EXPECT_TRUE(answers[i].error.empty()) << answers[i].error;
    }
  }
}

}  // namespace
}  // namespace sage::rag
