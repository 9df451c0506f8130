// What the OpenAI operator tests share (tests/rag/openai_test.cpp,
// openai_stream_test.cpp): AsyncResults that record what each call delivered,
// an operator context with its own metrics, prompts whose answers the test
// server makes distinct per call, and a generator opened against a server.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <sage/rag.hpp>

#include "rag/openai_test_server.hpp"

namespace sage::rag::openai_testing {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kWait = 60s;

// What the calls of one test delivered, by call number.
template <class Out>
class Outcomes {
 public:
  struct Outcome {
    int deliveries = 0;
    std::optional<Out> value;
    std::string error;
  };

  AsyncResult<Out> result(int call) {
    return AsyncResult<Out>([this, call](std::optional<Out> value, std::exception_ptr error) {
      std::lock_guard lock(mutex_);
      Outcome& outcome = outcomes_[call];
      ++outcome.deliveries;
      if (value) outcome.value = std::move(value);
      if (error) {
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          outcome.error = e.what();
        }
      }
      ++delivered_;
      changed_.notify_all();
    });
  }

  // Waits until `calls` calls delivered; false after kWait.
  bool wait(int calls) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, kWait, [&] { return delivered_ >= calls; });
  }
  int delivered() const {
    std::lock_guard lock(mutex_);
    return delivered_;
  }
  Outcome at(int call) const {
    std::lock_guard lock(mutex_);
    auto found = outcomes_.find(call);
    return found == outcomes_.end() ? Outcome{} : found->second;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<int, Outcome> outcomes_;
  int delivered_ = 0;
};

// An operator instance's context, with its own metrics.
struct Context {
  Metrics metrics;
  RuntimeContext context{RuntimeContext::Identity{.job_id = "test", .operator_name = "openai"},
                         metrics, nullptr};
  std::int64_t counter(const std::string& name) const {
    auto counters = metrics.snapshot().counters;
    return counters.count(name) ? counters[name] : 0;
  }
};

inline std::string query_of(int i) { return "what does record " + std::to_string(i) + " say?"; }
inline std::string context_of(int i) { return "record " + std::to_string(i) + " is about sage"; }

inline Prompt prompt_of(int i) {
  const Retrieved retrieved{
      .query = query_of(i),
      .hits = {Hit{.id = "doc#" + std::to_string(i), .text = context_of(i), .score = 1}}};
  return Promptor(PromptorConfig{}).map(retrieved);
}

inline GeneratorConfig config_for(const OpenAITestServer& server) {
  return GeneratorConfig{.model = "test-model",
                         .base_url = server.base_url(),
                         .api_key = "unused",
                         .backoff_initial = 10ms,
                         .backoff_max = 100ms,
                         .request_timeout = 20s,
                         .total_timeout = 50s};
}

inline std::vector<OpenAITestLogEntry> attempts_of(const OpenAITestServer& server,
                                                   const std::string& key) {
  std::vector<OpenAITestLogEntry> attempts;
  for (const auto& entry : server.requests()) {
    if (entry.key == key) attempts.push_back(entry);
  }
  std::sort(attempts.begin(), attempts.end(),
            [](const auto& a, const auto& b) { return a.attempt < b.attempt; });
  return attempts;
}

inline double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Runs `calls` prompts through a generator and waits for all of them.
inline Outcomes<Answer>& generate(OpenAIGenerator& generator, Outcomes<Answer>& outcomes,
                                  int calls) {
  for (int i = 0; i < calls; ++i) generator.invoke(prompt_of(i), outcomes.result(i));
  EXPECT_TRUE(outcomes.wait(calls))
      << "only " << outcomes.delivered() << " of " << calls << " calls completed within 60 s";
  return outcomes;
}

// A generator opened with a context of its own, and what its calls delivered.
struct OpenedGenerator {
  explicit OpenedGenerator(GeneratorConfig config) : generator(std::move(config)) {
    generator.open(ctx.context);
  }
  // Runs `calls` prompts and waits for all of them.
  Outcomes<Answer>& generate(int calls) {
    return openai_testing::generate(generator, outcomes, calls);
  }

  Context ctx;
  OpenAIGenerator generator;
  Outcomes<Answer> outcomes;
};

inline void expect_own_answer(const Outcomes<Answer>& outcomes, int call) {
  const auto outcome = outcomes.at(call);
  ASSERT_EQ(outcome.deliveries, 1) << "call " << call;
  ASSERT_TRUE(outcome.value.has_value()) << "call " << call << " failed: " << outcome.error;
  const Answer& answer = *outcome.value;
  EXPECT_EQ(answer.query, query_of(call));
  EXPECT_EQ(answer.text, OpenAITestServer::answer_for(query_of(call), context_of(call)));
  ASSERT_EQ(answer.hits.size(), 1u);
  EXPECT_EQ(answer.hits[0].id, "doc#" + std::to_string(call));
  EXPECT_EQ(answer.completion_tokens, OpenAITestServer::count_tokens(answer.text));
  std::int64_t prompt_tokens = 0;
  for (const Message& message : prompt_of(call).messages)
    prompt_tokens += OpenAITestServer::count_tokens(message.content);
  EXPECT_EQ(answer.prompt_tokens, prompt_tokens);
  EXPECT_GT(answer.latency_s, 0);
}

}  // namespace sage::rag::openai_testing
