// OpenAIGenerator and OpenAIEmbedder against the OpenAI-compatible test server
// on a free port of 127.0.0.1, called directly (open, invoke with
// AsyncResults that record what they deliver): concurrency, injected faults
// and retries, Retry-After, timeouts, dropped connections, failures that name
// the status and the server's message, the rate limiter, batching, API keys,
// size limits and metrics. Delays are measured from the server's timestamps.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <sage/rag.hpp>

#include "rag/openai_support.hpp"
#include "rag/openai_test_server.hpp"

namespace sage::rag {
namespace {

using namespace std::chrono_literals;
using namespace sage::rag::openai_testing;

TEST(OpenAIGenerator, KeepsMaxInFlightRequestsOpenAtOnce) {
  // Each request waits at the server until 32 are open (or 10 s): fewer than
  // 32 at once from the client would show as a peak below 32.
  OpenAITestServer server(OpenAITestServerOptions{.hold_until_concurrent = 32});
  OpenedGenerator run(config_for(server));
  EXPECT_EQ(run.generator.async_options().capacity, 32u);
  run.generate(96);
  EXPECT_EQ(server.peak_concurrent(), 32);
  for (int i = 0; i < 96; ++i) expect_own_answer(run.outcomes, i);
}

TEST(OpenAIGenerator, EveryCallCompletesOnceWithItsOwnAnswerDespite429sAnd500s) {
  OpenAITestServer server(
      OpenAITestServerOptions{.seed = 7, .rate_429 = 0.10, .rate_500 = 0.05, .retry_after_ms = 5});
  GeneratorConfig config = config_for(server);
  config.max_retries = 10;
  OpenedGenerator run(config);
  constexpr int kCalls = 400;
  run.generate(kCalls);
  std::int64_t prompt_tokens = 0, completion_tokens = 0;
  for (int i = 0; i < kCalls; ++i) {
    expect_own_answer(run.outcomes, i);
    const auto value = run.outcomes.at(i).value;
    if (value) {
      prompt_tokens += value->prompt_tokens;
      completion_tokens += value->completion_tokens;
    }
  }
  int faults = 0, status_429 = 0, status_500 = 0;
  const auto log = server.requests();
  for (const auto& entry : log) {
    status_429 += entry.status == 429;
    status_500 += entry.status == 500;
  }
  faults = status_429 + status_500;
  EXPECT_GT(status_429, kCalls / 20) << "the server should have injected about 10 % 429s";
  EXPECT_GT(status_500, kCalls / 50) << "the server should have injected about 5 % 500s";
  EXPECT_EQ(static_cast<int>(log.size()), kCalls + faults);
  EXPECT_EQ(run.ctx.counter("openai_requests"), kCalls + faults);
  EXPECT_EQ(run.ctx.counter("openai_retries"), faults);
  EXPECT_EQ(run.ctx.counter("openai_failures"), 0);
  EXPECT_EQ(run.ctx.counter("openai_prompt_tokens"), prompt_tokens);
  EXPECT_EQ(run.ctx.counter("openai_completion_tokens"), completion_tokens);
  const auto histograms = run.ctx.metrics.snapshot().histograms;
  EXPECT_EQ(histograms.at("openai_call_latency_s").count, static_cast<std::uint64_t>(kCalls));
  EXPECT_EQ(histograms.at("openai_request_latency_s").count,
            static_cast<std::uint64_t>(kCalls + faults));
}

// Every request is refused once with a 429, then answered.
OpenAITestServerOptions refuse_first_attempt(OpenAITestServerOptions options) {
  options.script = [](const OpenAITestRequest& request) {
    return request.attempt == 0 ? OpenAITestFault::too_many_requests : OpenAITestFault::none;
  };
  return options;
}

void expect_retried_after(const OpenAITestServer& server, int calls, double at_least,
                          double less_than) {
  for (int i = 0; i < calls; ++i) {
    const auto attempts = attempts_of(server, query_of(i));
    ASSERT_EQ(attempts.size(), 2u) << "call " << i;
    EXPECT_EQ(attempts[0].status, 429);
    const double waited = seconds(attempts[1].arrived - attempts[0].answered);
    EXPECT_GE(waited, at_least) << "call " << i << " came back too early";
    EXPECT_LT(waited, less_than) << "call " << i;
  }
}

TEST(OpenAIGenerator, HonoursRetryAfterInSeconds) {
  OpenAITestServer server(refuse_first_attempt(OpenAITestServerOptions{.retry_after_s = 1}));
  OpenedGenerator run(config_for(server));  // backoff alone would wait <= 10 ms
  run.generate(4);
  for (int i = 0; i < 4; ++i) expect_own_answer(run.outcomes, i);
  expect_retried_after(server, 4, 1.0, 30.0);
  EXPECT_EQ(run.ctx.counter("openai_retries"), 4);
}

TEST(OpenAIGenerator, RetryAfterMsWinsOverRetryAfter) {
  OpenAITestServer server(
      refuse_first_attempt(OpenAITestServerOptions{.retry_after_s = 20, .retry_after_ms = 300}));
  OpenedGenerator run(config_for(server));
  run.generate(4);
  for (int i = 0; i < 4; ++i) expect_own_answer(run.outcomes, i);
  expect_retried_after(server, 4, 0.3, 20.0);
}

TEST(OpenAIGenerator, AHungResponseTimesOutAndIsRetried) {
  OpenAITestServer server(OpenAITestServerOptions{.script = [](const OpenAITestRequest& request) {
    return request.attempt == 0 ? OpenAITestFault::hang : OpenAITestFault::none;
  }});
  GeneratorConfig config = config_for(server);
  config.request_timeout = 300ms;
  OpenedGenerator run(config);
  run.generate(3);
  for (int i = 0; i < 3; ++i) {
    expect_own_answer(run.outcomes, i);
    const auto attempts = attempts_of(server, query_of(i));
    ASSERT_GE(attempts.size(), 2u);
    EXPECT_EQ(attempts[0].fault, OpenAITestFault::hang);
    // The attempt's timeout runs on the client's clock, from before the
    // connection: the server sees the attempt later by a varying amount.
    EXPECT_EQ(attempts[1].fault, OpenAITestFault::none);
    EXPECT_GE(run.outcomes.at(i).value->latency_s, 0.3);
  }
  EXPECT_EQ(run.ctx.counter("openai_retries"), 3);
}

TEST(OpenAIGenerator, ADroppedConnectionIsRetried) {
  OpenAITestServer server(OpenAITestServerOptions{.script = [](const OpenAITestRequest& request) {
    return request.attempt == 0 ? OpenAITestFault::drop : OpenAITestFault::none;
  }});
  OpenedGenerator run(config_for(server));
  run.generate(5);
  for (int i = 0; i < 5; ++i) {
    expect_own_answer(run.outcomes, i);
    EXPECT_EQ(attempts_of(server, query_of(i)).size(), 2u);
  }
  EXPECT_EQ(run.ctx.counter("openai_retries"), 5);
}

TEST(OpenAIGenerator, ACallThatStillFailsAfterItsRetriesNamesTheStatusAndTheServersMessage) {
  OpenAITestServer server(OpenAITestServerOptions{
      .script = [](const OpenAITestRequest&) { return OpenAITestFault::server_error; }});
  GeneratorConfig config = config_for(server);
  config.max_retries = 2;
  OpenedGenerator run(config);
  run.generate(1);
  const auto outcome = run.outcomes.at(0);
  EXPECT_EQ(outcome.deliveries, 1);
  EXPECT_FALSE(outcome.value.has_value());
  EXPECT_NE(outcome.error.find("POST " + server.base_url() + "/chat/completions"),
            std::string::npos)
      << outcome.error;
  EXPECT_NE(outcome.error.find("HTTP 500: The server had an error while processing your request"),
            std::string::npos)
      << outcome.error;
  EXPECT_NE(outcome.error.find("after 2 retries"), std::string::npos) << outcome.error;
  EXPECT_EQ(outcome.error.find('\n'), std::string::npos) << "one line";
  EXPECT_EQ(server.requests().size(), 3u);
  EXPECT_EQ(run.ctx.counter("openai_failures"), 1);
}

TEST(OpenAIGenerator, TheRateLimiterBoundsTheRequestRate) {
  OpenAITestServer server;
  GeneratorConfig config = config_for(server);
  config.requests_per_minute = 1200;  // 20/s, at most 20 at once after a pause
  OpenedGenerator run(config);
  constexpr int kCalls = 50;
  run.generate(kCalls);
  for (int i = 0; i < kCalls; ++i) expect_own_answer(run.outcomes, i);
  auto log = server.requests();
  ASSERT_EQ(log.size(), static_cast<std::size_t>(kCalls));
  std::vector<Clock::time_point> arrivals;
  for (const auto& entry : log) arrivals.push_back(entry.arrived);
  std::sort(arrivals.begin(), arrivals.end());
  // In any window of w seconds, at most 20 + 20 w requests. The server's clock
  // sees the first requests late by their connections' setup, which later
  // requests (on kept-alive connections) skip: windows get 0.25 s of slack.
  // Without the limiter all 50 arrive within a few milliseconds.
  constexpr double kSlack = 0.25;
  for (std::size_t i = 0; i < arrivals.size(); ++i) {
    for (std::size_t j = i; j < arrivals.size(); ++j) {
      const double window = seconds(arrivals[j] - arrivals[i]);
      EXPECT_LE(static_cast<double>(j - i + 1), 20 + 20 * (window + kSlack))
          << "requests " << i << ".." << j << " arrived within " << window << " s";
    }
  }
  EXPECT_GE(seconds(arrivals.back() - arrivals.front()), (kCalls - 20) / 20.0 - kSlack);
}

TEST(OpenAIGenerator, AWrongApiKeyFailsAtOnceWith401) {
  OpenAITestServer server(OpenAITestServerOptions{.api_key = "the-right-key"});
  GeneratorConfig config = config_for(server);
  config.api_key = "a-wrong-key";
  OpenedGenerator run(config);
  run.generate(1);
  const auto outcome = run.outcomes.at(0);
  ASSERT_FALSE(outcome.value.has_value());
  EXPECT_NE(outcome.error.find("HTTP 401: Incorrect API key provided"), std::string::npos)
      << outcome.error;
  EXPECT_EQ(outcome.error.find("a-wrong-key"), std::string::npos) << "the key is never shown";
  EXPECT_EQ(server.requests().size(), 1u) << "a 401 is not retried";
}

TEST(OpenAIGenerator, TakesTheKeyAndEndpointFromTheEnvironment) {
  OpenAITestServer server(OpenAITestServerOptions{.api_key = "the-right-key"});
  ::setenv("OPENAI_API_KEY", "the-right-key", 1);
  ::setenv("OPENAI_BASE_URL", server.base_url().c_str(), 1);
  OpenedGenerator run(GeneratorConfig{.model = "test-model"});  // reads both when the client starts
  ::unsetenv("OPENAI_API_KEY");
  ::unsetenv("OPENAI_BASE_URL");
  run.generate(2);
  expect_own_answer(run.outcomes, 0);
  expect_own_answer(run.outcomes, 1);
}

TEST(OpenAIGenerator, RefusesAnOversizedResponse) {
  OpenAITestServer server(OpenAITestServerOptions{
      .script = [](const OpenAITestRequest&) { return OpenAITestFault::huge; }});
  OpenedGenerator run(config_for(server));  // 16 MiB by default, the server sends 50 MB
  run.generate(1);
  const auto outcome = run.outcomes.at(0);
  ASSERT_FALSE(outcome.value.has_value());
  EXPECT_NE(outcome.error.find("larger than max_response_bytes (16777216 bytes)"),
            std::string::npos)
      << outcome.error;
  EXPECT_EQ(server.requests().size(), 1u) << "an oversized response is not retried";
}

TEST(OpenAIGenerator, RefusesMalformedJsonNamingTheEndpoint) {
  OpenAITestServer server(OpenAITestServerOptions{
      .script = [](const OpenAITestRequest&) { return OpenAITestFault::malformed; }});
  OpenedGenerator run(config_for(server));
  run.generate(1);
  const auto outcome = run.outcomes.at(0);
  ASSERT_FALSE(outcome.value.has_value());
  EXPECT_NE(outcome.error.find(server.base_url() + "/chat/completions answered HTTP 200 with a "
                                                   "body that is not an OpenAI response"),
            std::string::npos)
      << outcome.error;
}

// A loopback port that refuses connections: bound, never listening, and held
// for the test's life so that no other process's listener can get it.
class ClosedPort {
 public:
  ClosedPort() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    socklen_t length = sizeof address;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
  }
  ~ClosedPort() { ::close(fd_); }
  ClosedPort(const ClosedPort&) = delete;
  ClosedPort& operator=(const ClosedPort&) = delete;
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

TEST(OpenAIGenerator, AnUnreachableEndpointFailsAfterItsRetries) {
  const ClosedPort closed;
  const std::string url = "http://127.0.0.1:" + std::to_string(closed.port()) + "/v1";
  OpenedGenerator run(
      GeneratorConfig{.model = "m", .base_url = url, .max_retries = 2, .backoff_initial = 10ms});
  run.generate(1);
  const auto outcome = run.outcomes.at(0);
  ASSERT_FALSE(outcome.value.has_value());
  EXPECT_NE(outcome.error.find("POST " + url + "/chat/completions failed: Couldn't connect"),
            std::string::npos)
      << outcome.error;
  EXPECT_NE(outcome.error.find("after 2 retries"), std::string::npos) << outcome.error;
  EXPECT_EQ(run.ctx.counter("openai_retries"), 2);
}

TEST(OpenAIGenerator, GivesUpAtTheTotalTimeout) {
  OpenAITestServer server(OpenAITestServerOptions{
      .script = [](const OpenAITestRequest&) { return OpenAITestFault::hang; }});
  GeneratorConfig config = config_for(server);
  config.request_timeout = 200ms;
  config.total_timeout = 700ms;
  config.max_retries = 100;
  OpenedGenerator run(config);
  run.generate(1);
  const auto outcome = run.outcomes.at(0);
  ASSERT_FALSE(outcome.value.has_value());
  EXPECT_TRUE(outcome.error.find("total timeout of 700 ms") != std::string::npos ||
              outcome.error.find("Timeout was reached") != std::string::npos)
      << outcome.error;
  EXPECT_GE(server.requests().size(), 2u) << "it retried within the total timeout";
}

TEST(OpenAIGenerator, ClosingFailsTheCallsStillOutOnce) {
  OpenAITestServer server(OpenAITestServerOptions{
      .script = [](const OpenAITestRequest&) { return OpenAITestFault::hang; }});
  OpenedGenerator run(config_for(server));
  for (int i = 0; i < 3; ++i) run.generator.invoke(prompt_of(i), run.outcomes.result(i));
  run.generator.close();
  ASSERT_TRUE(run.outcomes.wait(3));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(run.outcomes.at(i).deliveries, 1);
    EXPECT_NE(run.outcomes.at(i).error.find("closed before the call completed"), std::string::npos);
  }
}

TEST(OpenAIGenerator, EstimatesCostAndRefusesBadConfigs) {
  OpenAITestServer server;
  GeneratorConfig config = config_for(server);
  config.price_per_1k_prompt_tokens = 2;
  config.price_per_1k_completion_tokens = 5;
  OpenedGenerator run(config);
  run.generate(10);
  const double expected = run.ctx.counter("openai_prompt_tokens") * 2 / 1000.0 +
                          run.ctx.counter("openai_completion_tokens") * 5 / 1000.0;
  EXPECT_GT(expected, 0);
  EXPECT_DOUBLE_EQ(run.ctx.metrics.snapshot().gauges.at("openai_estimated_cost"), expected);

  EXPECT_THROW(OpenAIGenerator(GeneratorConfig{.model = ""}), Error);
  EXPECT_THROW(OpenAIGenerator(GeneratorConfig{.model = "m", .max_in_flight = 0}), Error);
  try {
    OpenAIGenerator(GeneratorConfig{.model = "m", .base_url = "localhost:8000"});
    FAIL() << "a base_url without a scheme was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("base_url 'localhost:8000' is not an http"),
              std::string::npos)
        << e.what();
  }
}

TEST(OpenAIEmbedder, BatchesChunksAndReturnsVectorsInOrder) {
  OpenAITestServer server;
  Context ctx;
  OpenAIEmbedder embedder(OpenAIConfig{.model = "test-embedding",
                                       .base_url = server.base_url(),
                                       .max_in_flight = 4,
                                       .ordered = true,
                                       .batch_size = 8});
  EXPECT_EQ(embedder.async_options().capacity, 32u);
  embedder.open(ctx.context);
  Outcomes<Embedded> outcomes;
  constexpr int kChunks = 50;
  std::vector<Chunk> chunks;
  for (int i = 0; i < kChunks; ++i) {
    chunks.push_back(Chunk{.id = "d#" + std::to_string(i),
                           .doc_id = "d",
                           .text = "chunk number " + std::to_string(i) + " of the text"});
    embedder.invoke(chunks.back(), outcomes.result(i));
  }
  ASSERT_TRUE(outcomes.wait(kChunks)) << outcomes.delivered() << " of " << kChunks;
  for (int i = 0; i < kChunks; ++i) {
    const auto outcome = outcomes.at(i);
    ASSERT_EQ(outcome.deliveries, 1);
    ASSERT_TRUE(outcome.value.has_value()) << outcome.error;
    EXPECT_EQ(outcome.value->chunk, chunks[i]);
    EXPECT_EQ(outcome.value->vector, hash_embed(chunks[i].text, 384));
  }
  int inputs = 0, largest = 0;
  const auto log = server.requests();
  for (const auto& entry : log) {
    EXPECT_EQ(entry.path, "/v1/embeddings");
    inputs += entry.batch;
    largest = std::max(largest, entry.batch);
  }
  EXPECT_EQ(inputs, kChunks);
  EXPECT_EQ(largest, 8);
  EXPECT_LT(log.size(), static_cast<std::size_t>(kChunks / 2)) << "the chunks were batched";
}

TEST(OpenAIEmbedder, SendsAPartialBatchAfterTheLinger) {
  OpenAITestServer server;
  Context ctx;
  OpenAIEmbedder embedder(
      OpenAIConfig{.model = "e", .base_url = server.base_url(), .batch_size = 100, .linger = 20ms});
  embedder.open(ctx.context);
  Outcomes<Embedded> outcomes;
  for (int i = 0; i < 3; ++i)
    embedder.invoke(Chunk{.id = std::to_string(i), .text = "t" + std::to_string(i)},
                    outcomes.result(i));
  ASSERT_TRUE(outcomes.wait(3));
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_EQ(server.requests()[0].batch, 3);
}

}  // namespace
}  // namespace sage::rag
