// The RAG pipeline on a real cluster: a head with no CPUs of its own and two
// workers run rag_job (rag_job_main.cpp) as task processes. The ingest job
// (Chunker -> HashEmbedder -> IndexWriter) builds a collection, then the ask
// job (Retriever -> Promptor -> OpenAIGenerator -> write_text) sends every
// chunk's text as a query to the OpenAI-compatible test server, which runs in
// this process. With 10 % 429s and 5 % 500s injected, every query is answered
// exactly once with its own answer and usage, and finds its own chunk first;
// one generator instance keeps max_in_flight requests open at once; a 401
// fails the job with the endpoint and the status, without a hang; and the
// endpoint and key in the submitter's environment reach the task processes.
#include <stdlib.h>

#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "integration/cluster_fixture.hpp"
#include "integration/rag_job.hpp"
#include "rag/openai_test_server.hpp"
#include "support/committed_lines.hpp"
#include "support/temp_dir.hpp"

namespace sage::testing {
namespace {

using rag::OpenAITestServer;
using rag::OpenAITestServerOptions;

std::string first_words(const std::string& text, std::size_t count) {
  std::istringstream in(text);
  std::string result;
  std::string word;
  for (std::size_t i = 0; i < count && in >> word; ++i) result += (i == 0 ? "" : " ") + word;
  return result;
}

class RagClusterTest : public ClusterTest {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    head_cpus_ = "0";
    worker_cpus_ = "8";  // ingest and ask each run 8 to 9 instances
    // The workers inherit this process's environment: no endpoint from the
    // person who runs the tests may reach the task processes that way.
    unsetenv("OPENAI_BASE_URL");
    unsetenv("OPENAI_API_KEY");
    ASSERT_NO_FATAL_FAILURE(start_cluster());
    const Outcome ingest = cli({"job", "submit", SAGE_RAG_JOB_BINARY, "ingest", collection()});
    ASSERT_EQ(ingest.code, 0) << ingest.output;
    ASSERT_NE(ingest.output.find("FINISHED"), std::string::npos) << ingest.output;
  }

  std::string collection() const { return state_dir_ + "/collection"; }

  // Submits the ask job with `generators` instances of `max_in_flight` each.
  Outcome ask(const TempDir& out, int generators, int max_in_flight,
              std::vector<std::string> options, std::vector<std::string> environment = {}) {
    std::vector<std::string> argv{SAGE_CLI_BINARY,
                                  "job",
                                  "submit",
                                  SAGE_RAG_JOB_BINARY,
                                  "ask",
                                  collection(),
                                  out.path(),
                                  std::to_string(generators),
                                  std::to_string(max_in_flight)};
    argv.insert(argv.end(), options.begin(), options.end());
    return run(argv, std::move(environment), 90s);
  }

  // The answers the job committed, by query; fails on a query answered twice.
  static std::map<std::string, nlohmann::json> answers(const TempDir& out) {
    int hidden = 0;
    std::map<std::string, nlohmann::json> by_query;
    for (const std::string& line : committed_lines(out.path(), &hidden)) {
      nlohmann::json answer = nlohmann::json::parse(line);
      const std::string query = answer.at("query");
      EXPECT_TRUE(by_query.emplace(query, std::move(answer)).second) << "answered twice: " << query;
    }
    EXPECT_EQ(hidden, 0) << "in-progress files left after the job finished";
    return by_query;
  }

  // Every chunk's text answered once, with its own answer and usage, and
  // its own chunk as the first hit.
  static void expect_every_query_answered_once(const TempDir& out) {
    const auto by_query = answers(out);
    const auto chunks = rag_chunks();
    EXPECT_EQ(by_query.size(), chunks.size());
    for (const rag::Chunk& chunk : chunks) {
      const auto found = by_query.find(chunk.text);
      if (found == by_query.end()) {
        ADD_FAILURE() << "not answered: " << chunk.text;
        continue;
      }
      const nlohmann::json& answer = found->second;
      const std::string text = OpenAITestServer::answer_for(chunk.text, first_words(chunk.text, 6));
      EXPECT_EQ(answer.at("text"), text);
      EXPECT_EQ(answer.at("first_hit"), chunk.id) << chunk.text;
      EXPECT_EQ(answer.at("completion_tokens"), OpenAITestServer::count_tokens(text));
      EXPECT_GT(answer.at("prompt_tokens").get<std::int64_t>(), 0);
    }
  }
};

TEST_F(RagClusterTest, EveryQueryIsAnsweredOnceWithItsOwnAnswerAndUsageDespite429sAnd500s) {
  OpenAITestServer server(
      OpenAITestServerOptions{.seed = 11, .rate_429 = 0.10, .rate_500 = 0.05, .retry_after_ms = 5});
  TempDir out;
  const Outcome job = ask(out, 2, 8, {"--base-url=" + server.base_url()});
  ASSERT_EQ(job.code, 0) << job.output;
  ASSERT_NE(job.output.find("FINISHED"), std::string::npos) << job.output;
  expect_every_query_answered_once(out);

  int status_429 = 0, status_500 = 0;
  for (const auto& entry : server.requests()) {
    status_429 += entry.status == 429;
    status_500 += entry.status == 500;
  }
  EXPECT_GT(status_429, 0);
  EXPECT_GT(status_500, 0);
  EXPECT_EQ(server.requests().size(), rag_chunks().size() + status_429 + status_500)
      << "requests beyond one success per query and one retry per fault";
}

TEST_F(RagClusterTest, OneGeneratorInstanceKeepsMaxInFlightRequestsOpenAtOnce) {
  // Every request waits until 16 are open: only one instance's full window opens them.
  OpenAITestServer server(OpenAITestServerOptions{.hold_until_concurrent = 16});
  TempDir out;
  const Outcome job = ask(out, 1, 16, {"--base-url=" + server.base_url()});
  ASSERT_EQ(job.code, 0) << job.output;
  expect_every_query_answered_once(out);
  EXPECT_EQ(server.peak_concurrent(), 16);
}

TEST_F(RagClusterTest, AFailingEndpointFailsTheJobNamingTheEndpointAndTheStatus) {
  OpenAITestServer server(OpenAITestServerOptions{.api_key = "the-right-key"});
  TempDir out;
  const auto start = std::chrono::steady_clock::now();
  const Outcome job = ask(out, 2, 8, {"--base-url=" + server.base_url(), "--api-key=a-wrong-key"});
  EXPECT_NE(job.code, 0) << job.output;
  EXPECT_NE(job.output.find("POST " + server.base_url() + "/chat/completions failed: HTTP 401"),
            std::string::npos)
      << job.output;
  EXPECT_EQ(job.output.find("a-wrong-key"), std::string::npos) << "the key was printed";
  // A 401 is not retried: the job ends well before the calls' total timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 45s) << job.output;
}

TEST_F(RagClusterTest, TheEndpointAndKeyInTheSubmittersEnvironmentReachTheTaskProcesses) {
  OpenAITestServer server(OpenAITestServerOptions{.api_key = "the-submitters-key"});
  TempDir out;
  const Outcome job = ask(
      out, 2, 8, {}, {"OPENAI_BASE_URL=" + server.base_url(), "OPENAI_API_KEY=the-submitters-key"});
  ASSERT_EQ(job.code, 0) << job.output;
  expect_every_query_answered_once(out);
  EXPECT_EQ(job.output.find("the-submitters-key"), std::string::npos) << "the key was printed";
}

}  // namespace
}  // namespace sage::testing
