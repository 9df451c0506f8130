// Backpressure and end-of-stream: a slow consumer slows its producers with
// bounded queues, nothing is lost when instances run at very different speeds,
// stop() ends an unbounded job after draining it, and a slow source's records
// do not wait for its later ones; task threads run under the scheduling
// policy the job asks for.
#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "support/collect.hpp"

namespace sage {
namespace {

using testing::Collected;
using testing::CollectSink;

// A source that gives record n only once the sink has seen record n - 1 (as a
// source waiting for replies to what it sent would): with a linger of 0 every
// record must leave at once, not wait in a partly filled batch for the next.
TEST(FlowControlTest, ASourceThatWaitsForItsDataSendsEachRecordWithinTheLinger) {
  constexpr long long kRecords = 200;
  std::mutex mutex;
  std::condition_variable seen_changed;
  long long seen = 0;
  bool stuck = false;
  ExecutionConfig config;
  config.linger = std::chrono::microseconds(0);
  LocalEnvironment env("waiting-source", config);
  long long next = 0;
  env.from_source([&]() -> std::optional<long long> {
       std::unique_lock lock(mutex);
       if (next == kRecords) return std::nullopt;
       // The deadline only ends a failing run: a held record is never seen.
       if (!seen_changed.wait_for(lock, std::chrono::seconds(5), [&] { return seen == next; })) {
         stuck = true;
         return std::nullopt;
       }
       return next++;
     })
      .rebalance()
      .sink([&](long long) {
        std::lock_guard lock(mutex);
        ++seen;
        seen_changed.notify_all();
      });
  env.execute();
  EXPECT_FALSE(stuck) << "record " << seen << " waited in the source's batch for the next one";
  EXPECT_EQ(seen, kRecords);
}

// The scheduling policies the threads of a job's instances ran under.
std::set<int> task_policies(const ExecutionConfig& config) {
  std::mutex mutex;
  std::set<int> policies;
  const auto record = [&] {
    const int policy = sched_getscheduler(0);  // of the calling thread
    std::lock_guard lock(mutex);
    policies.insert(policy);
  };
  LocalEnvironment env("scheduling", config);
  env.from_source([&, n = 0]() mutable -> std::optional<int> {
       if (n == 0) record();
       return n < 100 ? std::optional<int>(n++) : std::nullopt;
     })
      .rebalance()
      .map(
          [&](int x) {
            record();
            return x;
          },
          {.parallelism = 2})
      .sink([](int) {});
  env.execute();
  return policies;
}

TEST(FlowControlTest, TaskThreadsRunUnderTheSchedulingPolicyTheJobAsksFor) {
  EXPECT_EQ(task_policies(ExecutionConfig{}), std::set<int>{SCHED_BATCH});
  ExecutionConfig normal;
  normal.task_scheduling = TaskScheduling::kNormal;
  EXPECT_EQ(task_policies(normal), std::set<int>{SCHED_OTHER});
  // The program's own thread keeps its policy.
  EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);
}

TEST(FlowControlTest, SlowSinkBlocksSourceWithBoundedQueues) {
  ExecutionConfig config;
  config.batch_size = 64;
  config.channel_capacity = 4;
  LocalEnvironment env("slow-sink", config);
  std::atomic<long long> seen{0};
  env.from_sequence(0, 40'000LL, Options{.name = "fast"})
      .rebalance()
      .sink(
          [&seen](long long) {
            seen.fetch_add(1);
            // A consumer far slower than its producer.
            std::this_thread::sleep_for(std::chrono::microseconds(20));
          },
          {.name = "slow", .parallelism = 2});
  const JobResult result = env.execute();
  EXPECT_EQ(seen.load(), 40'000);
  double source_blocked = 0;
  for (const auto& s : result.instances) {
    if (s.operator_name == "slow") {
      EXPECT_EQ(s.queue_capacity_batches, 4u);
      EXPECT_LE(s.queue_peak_batches, 4u) << "queue grew past its bound";
      EXPECT_GE(s.queue_peak_batches, 3u) << "the queue never filled: no backpressure happened";
    }
    if (s.operator_name == "fast") source_blocked += s.blocked_seconds;
  }
  EXPECT_GT(source_blocked, 0.1) << "the source was never held back by the slow sink";
}

// Instance 0 is far slower than its siblings.
class SlowOnFirstInstance : public Function {
 public:
  void open(RuntimeContext& ctx) override { slow_ = ctx.parallel_index() == 0; }
  long long map(long long x) const {
    if (slow_ && x % 100 == 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
    return x;
  }

 private:
  bool slow_ = false;
};

TEST(FlowControlTest, NothingLostWhenInstancesRunAtVeryDifferentSpeeds) {
  auto collected = std::make_shared<Collected<long long>>();
  LocalEnvironment env("uneven");
  env.from_sequence(0, 200'000LL, Options{.parallelism = 4})
      .map<SlowOnFirstInstance>(Options{.parallelism = 4})
      .rebalance()
      .map([](long long x) { return x; }, {.parallelism = 3})
      .sink<CollectSink<long long>>(Options{.parallelism = 5}, collected);
  env.execute();
  const auto records = collected->sorted();
  ASSERT_EQ(records.size(), 200'000u);
  for (long long i = 0; i < 200'000; ++i) ASSERT_EQ(records[i], i);
}

TEST(FlowControlTest, StopEndsUnboundedJobAndDrainsInFlightRecords) {
  std::atomic<long long> emitted{0};
  auto collected = std::make_shared<Collected<long long>>();
  LocalEnvironment env("unbounded");
  env.from_source([&emitted, n = 0LL]() mutable -> std::optional<long long> {
       emitted.fetch_add(1);
       return n++;
     })
      .rebalance()
      .sink<CollectSink<long long>>(Options{.parallelism = 2}, collected);
  env.submit(false);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (emitted.load() < 100'000) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the source never ran";
    std::this_thread::yield();
  }
  env.stop();
  const JobResult result = env.wait();
  EXPECT_EQ(result.state, JobState::kStopped);
  const auto records = collected->sorted();
  ASSERT_GE(records.size(), 100'000u);
  // Every record the source emitted reached the sink: 0..n-1 without a gap.
  for (std::size_t i = 0; i < records.size(); ++i) ASSERT_EQ(records[i], static_cast<long long>(i));
  EXPECT_EQ(static_cast<long long>(records.size()), emitted.load());
}

}  // namespace
}  // namespace sage
