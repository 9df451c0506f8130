// OpenAIGenerator with streaming (GeneratorConfig::stream) and with failed
// calls emitted as error Answers (OnFailure::emit_error), against the
// OpenAI-compatible test server on 127.0.0.1: streamed answers equal whole
// ones, with usage and a time to the first token; a stream that hangs, drops,
// sends an event that is not JSON, an error event or too many bytes ends with
// a one-line error naming the endpoint (retried where a retry can help,
// without repeating text); and a call that fails after its retries becomes an
// Answer with the error, once, instead of failing.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <sage/rag.hpp>

#include "rag/openai_support.hpp"
#include "rag/openai_test_server.hpp"

namespace sage::rag {
namespace {

using namespace std::chrono_literals;
using namespace sage::rag::openai_testing;

GeneratorConfig streamed(GeneratorConfig config) {
  config.stream = true;
  return config;
}

// Every request meets `fault` on its first attempt and none after.
OpenAITestServerOptions first_attempt(OpenAITestFault fault, OpenAITestServerOptions options = {}) {
  options.script = [fault](const OpenAITestRequest& request) {
    return request.attempt == 0 ? fault : OpenAITestFault::none;
  };
  return options;
}

OpenAITestServerOptions every_attempt(OpenAITestFault fault, OpenAITestServerOptions options = {}) {
  options.script = [fault](const OpenAITestRequest&) { return fault; };
  return options;
}

std::string endpoint(const OpenAITestServer& server) {
  return "POST " + server.base_url() + "/chat/completions";
}

// The error of call 0 of a run that should have failed it.
std::string failure_of(const OpenedGenerator& run) {
  const auto outcome = run.outcomes.at(0);
  EXPECT_EQ(outcome.deliveries, 1);
  EXPECT_FALSE(outcome.value.has_value()) << "the call succeeded: " << outcome.value->text;
  return outcome.error;
}

TEST(OpenAIGeneratorStream, StreamedAnswersEqualWholeOnesWithUsage) {
  OpenAITestServer server;
  OpenedGenerator whole(config_for(server));
  OpenedGenerator stream(streamed(config_for(server)));
  constexpr int kCalls = 40;
  whole.generate(kCalls);
  stream.generate(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    expect_own_answer(stream.outcomes, i);  // the text, the hits and the usage
    const auto a = whole.outcomes.at(i).value;
    const auto b = stream.outcomes.at(i).value;
    ASSERT_TRUE(a && b) << "call " << i;
    EXPECT_EQ(b->text, a->text);
    EXPECT_EQ(b->prompt_tokens, a->prompt_tokens);
    EXPECT_EQ(b->completion_tokens, a->completion_tokens);
    EXPECT_TRUE(b->error.empty());
    EXPECT_GT(b->time_to_first_token_s, 0);
    EXPECT_LE(b->time_to_first_token_s, b->latency_s);
    EXPECT_EQ(a->time_to_first_token_s, a->latency_s) << "a whole answer's first token is its end";
  }
  EXPECT_EQ(stream.ctx.counter("openai_completion_tokens"),
            whole.ctx.counter("openai_completion_tokens"));
  EXPECT_EQ(stream.ctx.counter("openai_prompt_tokens"), whole.ctx.counter("openai_prompt_tokens"));
  EXPECT_EQ(stream.ctx.metrics.snapshot().histograms.at("openai_time_to_first_token_s").count,
            static_cast<std::uint64_t>(kCalls));
}

TEST(OpenAIGeneratorStream, TheFirstTokenComesLongBeforeTheEndWithSlowTokens) {
  constexpr auto kTokenDelay = 40ms;
  OpenAITestServer server(OpenAITestServerOptions{.token_delay = kTokenDelay});
  OpenedGenerator run(streamed(config_for(server)));
  run.generate(4);
  for (int i = 0; i < 4; ++i) {
    expect_own_answer(run.outcomes, i);
    const Answer& answer = *run.outcomes.at(i).value;
    // The server waits token_delay after each word: the last comes
    // (words - 1) delays after the first.
    const double spread = seconds(kTokenDelay * (answer.completion_tokens - 1));
    EXPECT_GE(answer.latency_s - answer.time_to_first_token_s, spread)
        << "time to first token " << answer.time_to_first_token_s << " s, latency "
        << answer.latency_s << " s";
  }
}

TEST(OpenAIGeneratorStream, KeepsMaxInFlightStreamsOpenAtOnce) {
  OpenAITestServer server(OpenAITestServerOptions{.token_delay = 5ms, .hold_until_concurrent = 16});
  GeneratorConfig config = streamed(config_for(server));
  config.max_in_flight = 16;
  OpenedGenerator run(config);
  run.generate(48);
  EXPECT_EQ(server.peak_concurrent(), 16);
  for (int i = 0; i < 48; ++i) expect_own_answer(run.outcomes, i);
}

TEST(OpenAIGeneratorStream, AHungStreamFailsWithinTheIdleTimeoutNamingTheEndpoint) {
  OpenAITestServer server(every_attempt(OpenAITestFault::hang));
  GeneratorConfig config = streamed(config_for(server));  // request_timeout 20 s
  config.stream_idle_timeout = 300ms;
  config.max_retries = 0;
  OpenedGenerator run(config);
  run.generate(1);
  const std::string error = failure_of(run);
  EXPECT_NE(error.find(endpoint(server) + " failed: the stream sent nothing for "
                                          "stream_idle_timeout (300 ms) after "),
            std::string::npos)
      << error;
  EXPECT_EQ(error.find('\n'), std::string::npos);
  // Measured on the server: from the hung request's arrival to the call's failure.
  const auto attempts = attempts_of(server, query_of(0));
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].fault, OpenAITestFault::hang);
  const double failed_after = seconds(Clock::now() - attempts[0].arrived);
  EXPECT_LT(failed_after, 10.0) << "the hung stream outlived its idle timeout by far";
}

TEST(OpenAIGeneratorStream, AHungStreamIsRetriedFromTheStart) {
  OpenAITestServer server(first_attempt(OpenAITestFault::hang));
  GeneratorConfig config = streamed(config_for(server));
  config.stream_idle_timeout = 200ms;
  OpenedGenerator run(config);
  run.generate(3);
  for (int i = 0; i < 3; ++i) {
    expect_own_answer(run.outcomes, i);  // half the words came twice: the text has them once
    EXPECT_EQ(attempts_of(server, query_of(i)).size(), 2u);
    EXPECT_GE(run.outcomes.at(i).value->latency_s, 0.2);
  }
  EXPECT_EQ(run.ctx.counter("openai_retries"), 3);
}

TEST(OpenAIGeneratorStream, AStreamThatDoesNotStartFailsAtTheRequestTimeout) {
  OpenAITestServer server(OpenAITestServerOptions{.latency = 20s});
  GeneratorConfig config = streamed(config_for(server));
  config.request_timeout = 300ms;
  config.max_retries = 0;
  OpenedGenerator run(config);
  run.generate(1);
  const std::string error = failure_of(run);
  EXPECT_NE(error.find(endpoint(server) + " failed: no response within request_timeout (300 ms)"),
            std::string::npos)
      << error;
}

TEST(OpenAIGeneratorStream, AStreamDroppedMidWayIsRetriedWithoutDuplicatedText) {
  OpenAITestServer server(first_attempt(OpenAITestFault::drop));
  OpenedGenerator run(streamed(config_for(server)));
  run.generate(5);
  for (int i = 0; i < 5; ++i) {
    expect_own_answer(run.outcomes, i);
    EXPECT_EQ(attempts_of(server, query_of(i)).size(), 2u);
  }
  EXPECT_EQ(run.ctx.counter("openai_retries"), 5);
}

TEST(OpenAIGeneratorStream, AStreamDroppedEveryTimeFailsAfterItsRetries) {
  OpenAITestServer server(every_attempt(OpenAITestFault::drop));
  GeneratorConfig config = streamed(config_for(server));
  config.max_retries = 2;
  OpenedGenerator run(config);
  run.generate(1);
  const std::string error = failure_of(run);
  EXPECT_NE(error.find(endpoint(server) + " failed: "), std::string::npos) << error;
  EXPECT_NE(error.find("bytes of the stream (after 2 retries; max_retries is 2)"),
            std::string::npos)
      << error;
  EXPECT_EQ(attempts_of(server, query_of(0)).size(), 3u);
}

TEST(OpenAIGeneratorStream, AnEventThatIsNotJsonFailsAtOnce) {
  OpenAITestServer server(every_attempt(OpenAITestFault::malformed));
  OpenedGenerator run(streamed(config_for(server)));
  run.generate(1);
  const std::string error = failure_of(run);
  EXPECT_NE(error.find(endpoint(server) + " failed: the stream sent an event that is not JSON"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("check that base_url points at an OpenAI-compatible API"),
            std::string::npos);
  EXPECT_EQ(attempts_of(server, query_of(0)).size(), 1u) << "not retried";
}

TEST(OpenAIGeneratorStream, AnErrorEventIsRetriedAndNamedWhenItPersists) {
  {
    OpenAITestServer server(first_attempt(OpenAITestFault::error_event));
    OpenedGenerator run(streamed(config_for(server)));
    run.generate(3);
    for (int i = 0; i < 3; ++i) expect_own_answer(run.outcomes, i);
    EXPECT_EQ(run.ctx.counter("openai_retries"), 3);
  }
  OpenAITestServer server(every_attempt(OpenAITestFault::error_event));
  GeneratorConfig config = streamed(config_for(server));
  config.max_retries = 1;
  OpenedGenerator run(config);
  run.generate(1);
  const std::string error = failure_of(run);
  EXPECT_NE(error.find(endpoint(server) +
                       " failed: the stream sent an error event: The server had an error while "
                       "processing your request (scripted, mid-stream) (after 1 retries"),
            std::string::npos)
      << error;
}

TEST(OpenAIGeneratorStream, AStreamOverTheSizeCapFailsAtOnce) {
  OpenAITestServerOptions options = every_attempt(OpenAITestFault::huge);
  options.huge_bytes = 8u << 20;
  OpenAITestServer server(options);
  GeneratorConfig config = streamed(config_for(server));
  config.max_response_bytes = 1u << 20;
  OpenedGenerator run(config);
  run.generate(1);
  const std::string error = failure_of(run);
  EXPECT_NE(error.find(endpoint(server) +
                       " failed: the response is larger than max_response_bytes (1048576 bytes)"),
            std::string::npos)
      << error;
  EXPECT_EQ(attempts_of(server, query_of(0)).size(), 1u);
}

TEST(OpenAIGeneratorStream, RefusesANonPositiveIdleTimeout) {
  GeneratorConfig config{.model = "m", .base_url = "http://127.0.0.1:1/v1", .stream = true};
  config.stream_idle_timeout = 0ms;
  try {
    OpenAIGenerator generator(config);
    FAIL() << "accepted stream_idle_timeout 0";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stream_idle_timeout must be positive"), std::string::npos)
        << e.what();
  }
}

// --- failed calls as error Answers

TEST(OpenAIGeneratorErrorOutput, AFailedCallBecomesAnAnswerWithTheError) {
  // Calls 1 and 3 fail on every attempt; the others answer.
  OpenAITestServerOptions options;
  options.script = [](const OpenAITestRequest& request) {
    return request.key == query_of(1) || request.key == query_of(3) ? OpenAITestFault::server_error
                                                                    : OpenAITestFault::none;
  };
  OpenAITestServer server(options);
  for (const bool stream : {false, true}) {
    GeneratorConfig config = config_for(server);
    config.stream = stream;
    config.max_retries = 1;
    config.on_failure = OnFailure::emit_error;
    OpenedGenerator run(config);
    run.generate(5);
    for (int i : {0, 2, 4}) {
      expect_own_answer(run.outcomes, i);
      EXPECT_TRUE(run.outcomes.at(i).value->error.empty());
    }
    for (int i : {1, 3}) {
      const auto outcome = run.outcomes.at(i);
      ASSERT_EQ(outcome.deliveries, 1);
      ASSERT_TRUE(outcome.value.has_value()) << "call " << i << " failed: " << outcome.error;
      const Answer& answer = *outcome.value;
      EXPECT_EQ(answer.query, query_of(i));
      ASSERT_EQ(answer.hits.size(), 1u);
      EXPECT_TRUE(answer.text.empty());
      EXPECT_EQ(answer.error_status, 500);
      EXPECT_EQ(answer.error, "OpenAIGenerator: " + endpoint(server) +
                                  " failed: HTTP 500: The server had an error while processing "
                                  "your request (scripted) (after 1 retries; max_retries is 1)");
      EXPECT_GT(answer.latency_s, 0);
    }
    EXPECT_EQ(run.ctx.counter("openai_error_answers"), 2);
    EXPECT_EQ(run.ctx.counter("openai_failures"), 2);
  }
}

TEST(OpenAIGeneratorErrorOutput, AnErrorAnswerNamesTheStatusButNeverTheKey) {
  OpenAITestServer server(OpenAITestServerOptions{.api_key = "the-right-key"});
  GeneratorConfig config = config_for(server);
  config.api_key = "sk-wrong-secret-key";
  config.on_failure = OnFailure::emit_error;
  OpenedGenerator run(config);
  run.generate(1);
  const auto outcome = run.outcomes.at(0);
  ASSERT_TRUE(outcome.value.has_value()) << outcome.error;
  EXPECT_EQ(outcome.value->error_status, 401);
  EXPECT_NE(outcome.value->error.find(endpoint(server) + " failed: HTTP 401: Incorrect API key"),
            std::string::npos)
      << outcome.value->error;
  EXPECT_EQ(outcome.value->error.find("sk-wrong"), std::string::npos);
  EXPECT_EQ(server.requests().size(), 1u) << "a 401 is not retried";
}

TEST(OpenAIGeneratorErrorOutput, TheEnginesTimeoutGivesAnErrorAnswerToo) {
  GeneratorConfig config{
      .model = "m", .base_url = "http://127.0.0.1:1/v1", .on_failure = OnFailure::emit_error};
  OpenAIGenerator generator(config);
  Outcomes<Answer> outcomes;
  generator.timeout(prompt_of(0), outcomes.result(0));
  ASSERT_TRUE(outcomes.wait(1));
  const auto outcome = outcomes.at(0);
  ASSERT_TRUE(outcome.value.has_value()) << outcome.error;
  EXPECT_EQ(outcome.value->query, query_of(0));
  EXPECT_NE(outcome.value->error.find("no answer within the engine's timeout"), std::string::npos);
}

}  // namespace
}  // namespace sage::rag
