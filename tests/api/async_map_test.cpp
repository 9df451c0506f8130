// The asynchronous map (sage/async_function.hpp) in jobs run in this process:
// calls completed on other threads and out of order, ordered and unordered
// output, the capacity bound and backpressure, timeouts, failures, the end
// of input, cancellation, keyed streams and metrics.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <numeric>

#include <sage/sage.hpp>

#include "support/delayed_calls.hpp"
#include "support/eventually.hpp"
#include "support/temp_dir.hpp"

namespace sage {
namespace {

using namespace std::chrono_literals;
using testing::DelayedCalls;

// Records in the order a sink (of parallelism 1) received them.
template <class T>
struct Arrivals {
  std::mutex mutex;
  std::vector<T> records;
  auto sink() {
    return [this](const T& x) {
      std::lock_guard lock(mutex);
      records.push_back(x);
    };
  }
  std::vector<T> sorted() {
    std::lock_guard lock(mutex);
    auto copy = records;
    std::sort(copy.begin(), copy.end());
    return copy;
  }
};

std::vector<long long> iota(long long n, long long times = 1) {
  std::vector<long long> v(static_cast<std::size_t>(n));
  for (long long i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i * times;
  return v;
}

// Holds calls until `group` are out, then completes them in reverse order on
// another thread: results come back out of input order.
class Reverser {
 public:
  explicit Reverser(std::size_t group) : group_(group) {}
  void add(long long x, AsyncResult<long long> result) {
    std::vector<std::pair<long long, AsyncResult<long long>>> group;
    {
      std::lock_guard lock(mutex_);
      held_.emplace_back(x, std::move(result));
      if (held_.size() < group_) return;
      group.swap(held_);
    }
    calls_.after(0us, [group = std::move(group)] {
      for (auto it = group.rbegin(); it != group.rend(); ++it) it->second.complete(it->first * 10);
    });
  }

 private:
  std::size_t group_;
  std::mutex mutex_;
  std::vector<std::pair<long long, AsyncResult<long long>>> held_;
  DelayedCalls calls_;
};

std::size_t inversions(const std::vector<long long>& v) {
  std::size_t n = 0;
  for (std::size_t i = 1; i < v.size(); ++i) n += v[i] < v[i - 1];
  return n;
}

std::vector<long long> run_reversed(bool ordered) {
  auto reverser = std::make_shared<Reverser>(8);
  Arrivals<long long> out;
  LocalEnvironment env(ordered ? "ordered" : "unordered");
  env.from_sequence(0, 1000)
      .map_async<long long>(
          [reverser](const long long& x, AsyncResult<long long> r) { reverser->add(x, r); },
          AsyncOptions{.capacity = 8, .ordered = ordered})
      .sink(out.sink());
  env.execute();
  return out.records;
}

TEST(AsyncMapTest, OrderedOutputKeepsInputOrderThoughCallsCompleteInReverse) {
  EXPECT_EQ(run_reversed(true), iota(1000, 10));
}

TEST(AsyncMapTest, UnorderedOutputComesAsCallsCompleteWithEveryResultOnce) {
  auto records = run_reversed(false);
  EXPECT_GT(inversions(records), 100u) << "the results came in input order";
  std::sort(records.begin(), records.end());
  EXPECT_EQ(records, iota(1000, 10));
}

// Counts its calls in flight (from invoke to just before completion), each
// completed after `delay` on a timer thread.
struct InFlight {
  std::atomic<int> now{0};
  std::atomic<int> most{0};
  std::atomic<long long> issued{0};
  DelayedCalls calls;
};

class CountingCall : public AsyncFunction<long long, long long> {
 public:
  CountingCall(std::shared_ptr<InFlight> state, std::size_t capacity,
               std::chrono::microseconds delay)
      : state_(std::move(state)), capacity_(capacity), delay_(delay) {}
  void invoke(const long long& x, AsyncResult<long long> result) override {
    const int now = ++state_->now;
    int most = state_->most.load();
    while (now > most && !state_->most.compare_exchange_weak(most, now)) {
    }
    ++state_->issued;
    state_->calls.after(delay_, [state = state_, x, result] {
      --state->now;
      result.complete(x + 1);
    });
  }
  AsyncOptions async_options() const override { return {.capacity = capacity_}; }

 private:
  std::shared_ptr<InFlight> state_;
  std::size_t capacity_;
  std::chrono::microseconds delay_;
};

TEST(AsyncMapTest, CallsInFlightReachTheCapacityAndNeverExceedIt) {
  auto state = std::make_shared<InFlight>();
  Arrivals<long long> out;
  LocalEnvironment env("capacity");
  env.from_sequence(0, 3000)
      .map<CountingCall>(Options{.name = "counting"}, state, std::size_t{16}, 300us)
      .sink(out.sink());
  const JobResult result = env.execute();
  EXPECT_EQ(state->most.load(), 16);
  EXPECT_EQ(out.sorted(), [] {
    auto v = iota(3000);
    for (auto& x : v) ++x;
    return v;
  }());
  // The instance's metrics: every call completed, none out at the end.
  const auto it =
      std::find_if(result.instances.begin(), result.instances.end(),
                   [](const InstanceStats& s) { return s.operator_name == "counting"; });
  ASSERT_NE(it, result.instances.end());
  EXPECT_EQ(it->user_metrics.counters.at("async_completed"), 3000);
  EXPECT_EQ(it->user_metrics.counters.at("async_failed"), 0);
  EXPECT_EQ(it->user_metrics.counters.at("async_timed_out"), 0);
  EXPECT_EQ(it->user_metrics.gauges.at("async_in_flight"), 0.0);
  EXPECT_EQ(it->user_metrics.histograms.at("async_latency_seconds").count, 3000u);
  EXPECT_GE(it->user_metrics.histograms.at("async_latency_seconds").min, 300e-6);
}

TEST(AsyncMapTest, AFullInstanceBackpressuresItsProducerThroughItsBoundedQueue) {
  auto state = std::make_shared<InFlight>();
  auto produced = std::make_shared<std::atomic<long long>>(0);
  auto gate = std::make_shared<std::atomic<bool>>(false);
  ExecutionConfig config;
  config.batch_size = 16;
  config.channel_capacity = 4;
  LocalEnvironment env("backpressure", config);
  constexpr long long kRecords = 20'000;
  Arrivals<long long> out;
  env.from_source(
         [produced, n = 0LL]() mutable -> std::optional<long long> {
           if (n == kRecords) return std::nullopt;
           ++*produced;
           return n++;
         },
         {.name = "fast"})
      .rebalance()
      .map_async<long long>(
          [state, gate](const long long& x, AsyncResult<long long> r) {
            ++state->issued;
            // Slow (2 ms a call, 2 at a time) until the gate opens.
            state->calls.after(gate->load() ? 0us : 2000us, [x, r] { r.complete(x); });
          },
          AsyncOptions{.capacity = 2, .ordered = false}, {.name = "slow"})
      .sink(out.sink());
  env.submit();
  ASSERT_TRUE(testing::eventually([&] { return state->issued.load() >= 150; }, 30s))
      << "the slow map never got going";
  // The source is held back by the full queue: besides the calls issued, at
  // most its capacity in batches, a batch in the writer, one being pushed and
  // one taken in beyond the calls in flight (it would otherwise be done: it
  // makes 20 000 records in a few milliseconds).
  const long long produced_now = produced->load();
  const long long issued_now = state->issued.load();
  EXPECT_LE(produced_now, issued_now + (4 + 3) * 16 + 16) << "the source ran ahead of the slow map";
  gate->store(true);
  const JobResult result = env.wait();
  EXPECT_EQ(result.state, JobState::kFinished);
  EXPECT_EQ(out.sorted(), iota(kRecords));
}

TEST(AsyncMapTest, ACompletionWakesATaskThatWaitsForInput) {
  // "late" sends its one record only once the result of "early"'s record
  // reached the sink: until then the map's task waits for input, and only
  // the completion itself can get the result out.
  struct Shared {
    std::mutex mutex;
    std::condition_variable arrived;
    bool seen = false;
    bool waited_in_vain = false;
  };
  auto shared = std::make_shared<Shared>();
  DelayedCalls calls;
  LocalEnvironment env("wake");
  auto early = env.from_collection(std::vector<long long>{7}, {.name = "early"});
  auto late = env.from_source(
      [shared, sent = false]() mutable -> std::optional<long long> {
        if (sent) return std::nullopt;
        std::unique_lock lock(shared->mutex);
        shared->waited_in_vain = !shared->arrived.wait_for(lock, 20s, [&] { return shared->seen; });
        sent = true;
        return 8;
      },
      {.name = "late"});
  Arrivals<long long> out;
  early.union_with(late)
      .rebalance()
      .map_async<long long>([&calls](const long long& x, AsyncResult<long long> r) {
        calls.after(10ms, [x, r] { r.complete(x * 10); });
      })
      .sink([shared, &out](long long x) {
        out.sink()(x);
        std::lock_guard lock(shared->mutex);
        shared->seen = true;
        shared->arrived.notify_all();
      });
  env.execute();
  EXPECT_FALSE(shared->waited_in_vain) << "the result waited for the next input";
  EXPECT_EQ(out.sorted(), (std::vector<long long>{70, 80}));
}

// Never completes a call; its timeout() answers -1 when `fallback` is set.
class Unanswered : public AsyncFunction<long long, long long> {
 public:
  Unanswered(bool fallback, std::shared_ptr<std::atomic<int>> timeouts)
      : fallback_(fallback), timeouts_(std::move(timeouts)) {}
  void invoke(const long long& x, AsyncResult<long long> result) override {
    if (x % 10 != 3) result.complete(x);  // every tenth call is never answered
  }
  void timeout(const long long& x, AsyncResult<long long> result) override {
    ++*timeouts_;
    if (fallback_) {
      result.complete(-1);
    } else {
      AsyncFunction::timeout(x, result);
    }
  }
  AsyncOptions async_options() const override { return {.capacity = 8, .timeout = 50ms}; }

 private:
  bool fallback_;
  std::shared_ptr<std::atomic<int>> timeouts_;
};

TEST(AsyncMapTest, ATimedOutCallGoesToTimeoutWhichMayAnswerInItsPlace) {
  auto timeouts = std::make_shared<std::atomic<int>>(0);
  Arrivals<long long> out;
  LocalEnvironment env("timeouts");
  env.from_sequence(0, 40)
      .map<Unanswered>(Options{.name = "lookup"}, true, timeouts)
      .sink(out.sink());
  const JobResult result = env.execute();
  EXPECT_EQ(timeouts->load(), 4);
  std::vector<long long> expected;
  for (long long x = 0; x < 40; ++x) expected.push_back(x % 10 == 3 ? -1 : x);
  EXPECT_EQ(out.records, expected) << "ordered: the fallbacks in their inputs' places";
  EXPECT_EQ(result.instances.at(1).user_metrics.counters.at("async_timed_out"), 4);
}

std::string failure_of(Environment& env) {
  try {
    env.execute();
  } catch (const JobFailedError& e) {
    return e.what();
  }
  ADD_FAILURE() << "the job did not fail";
  return "";
}

TEST(AsyncMapTest, ByDefaultATimedOutCallFailsTheJobNamingTheOperator) {
  auto timeouts = std::make_shared<std::atomic<int>>(0);
  LocalEnvironment env("timeout-fails");
  env.from_sequence(0, 40)
      .map<Unanswered>(Options{.name = "lookup"}, false, timeouts)
      .sink([](long long) {});
  const std::string error = failure_of(env);
  EXPECT_NE(error.find("'lookup'"), std::string::npos) << error;
  EXPECT_NE(error.find("asynchronous call timed out"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
}

TEST(AsyncMapTest, AFailedCallFailsTheJobWithItsMessage) {
  DelayedCalls calls;
  LocalEnvironment env("failing");
  env.from_sequence(0, 1000)
      .map_async<long long>(
          [&calls](const long long& x, AsyncResult<long long> r) {
            calls.after(100us, [x, r] {
              if (x == 517) {
                r.fail("upstream answered 503 for record 517");
              } else {
                r.complete(x);
              }
            });
          },
          AsyncOptions{.capacity = 32}, {.name = "fetch"})
      .sink([](long long) {});
  const std::string error = failure_of(env);
  EXPECT_NE(error.find("'fetch'"), std::string::npos) << error;
  EXPECT_NE(error.find("upstream answered 503 for record 517"), std::string::npos) << error;
}

TEST(AsyncMapTest, BadOptionsAreRefusedWhenTheJobIsBuilt) {
  LocalEnvironment env("bad");
  auto numbers = env.from_sequence(0, 10);
  const auto noop = [](const long long&, AsyncResult<long long>) {};
  try {
    numbers.map_async<long long>(noop, AsyncOptions{.capacity = 0});
    ADD_FAILURE() << "capacity 0 was accepted";
  } catch (const InvalidPlanError& e) {
    EXPECT_NE(std::string(e.what()).find("capacity is 0"), std::string::npos) << e.what();
  }
}

// Its last call completes long after the input ended; close() says whether
// any call was still out.
class SlowLast : public AsyncFunction<long long, long long> {
 public:
  explicit SlowLast(std::shared_ptr<std::atomic<int>> out_at_close)
      : out_at_close_(std::move(out_at_close)) {}
  void invoke(const long long& x, AsyncResult<long long> result) override {
    ++out_;
    calls_.after(x == 99 ? 300ms : 0ms, [this, x, result] {
      --out_;
      result.complete(x);
    });
  }
  void close() override { out_at_close_->store(out_.load()); }

 private:
  std::atomic<int> out_{0};
  std::shared_ptr<std::atomic<int>> out_at_close_;
  DelayedCalls calls_;
};

TEST(AsyncMapTest, TheEndOfInputWaitsForTheLastCallThenCloses) {
  auto out_at_close = std::make_shared<std::atomic<int>>(-1);
  Arrivals<long long> out;
  LocalEnvironment env("last");
  env.from_sequence(0, 100).map<SlowLast>(out_at_close).sink(out.sink());
  env.execute();
  EXPECT_EQ(out.records, iota(100));
  EXPECT_EQ(out_at_close->load(), 0);
}

TEST(AsyncMapTest, ACancelledJobDoesNotWaitForCallsThatNeverCompleteAndLateOnesAreIgnored) {
  // The calls are kept here, never completed while the job runs.
  auto kept = std::make_shared<std::vector<AsyncResult<long long>>>();
  auto mutex = std::make_shared<std::mutex>();
  auto env = std::make_unique<LocalEnvironment>("cancelled");
  env->from_sequence(0, 100)
      .map_async<long long>(
          [kept, mutex](const long long&, AsyncResult<long long> r) {
            std::lock_guard lock(*mutex);
            kept->push_back(r);
          },
          AsyncOptions{.capacity = 4}, {.name = "stuck"})
      .sink([](long long) {});
  env->from_sequence(0, 1'000'000)
      .map(
          [kept, mutex](long long x) {
            if (x == 5000) {
              // Once the other branch is stuck with its calls out.
              testing::eventually(
                  [&] {
                    std::lock_guard lock(*mutex);
                    return kept->size() == 4;
                  },
                  20s);
              throw std::runtime_error("the other branch broke");
            }
            return x;
          },
          {.name = "breaker"})
      .sink([](long long) {});
  auto run = std::async(std::launch::async, [&] { return failure_of(*env); });
  ASSERT_EQ(run.wait_for(30s), std::future_status::ready) << "the cancelled job hangs";
  EXPECT_NE(run.get().find("the other branch broke"), std::string::npos);
  env.reset();  // the job and its operators are gone
  std::lock_guard lock(*mutex);
  EXPECT_EQ(kept->size(), 4u);
  for (auto& result : *kept) result.complete(1);  // delivered to nobody, safely
}

// Keyed: a count per key in keyed state, read and updated in invoke() (on
// the task's thread, where the call's key is current); the result carries it.
class KeyedCount : public AsyncFunction<long long, std::string> {
 public:
  void open(RuntimeContext& ctx) override {
    ctx_ = &ctx;
    count_.emplace(ctx.value_state<long long>("count"));
  }
  void invoke(const long long& x, AsyncResult<std::string> result) override {
    const long long key = ctx_->current_key<long long>();
    const long long n = ++count_->get_or_init(0);
    calls_.after(std::chrono::microseconds(x % 5 * 50), [=] {
      result.complete(std::to_string(key) + ":" + std::to_string(n) + ":" + std::to_string(x));
    });
  }
  AsyncOptions async_options() const override { return {.capacity = 16, .ordered = false}; }

 private:
  RuntimeContext* ctx_ = nullptr;
  std::optional<ValueState<long long>> count_;
  DelayedCalls calls_;
};

TEST(AsyncMapTest, OnAKeyedStreamEachCallSeesItsKeyAndKeyedStateAtParallelismFour) {
  Arrivals<std::string> out;
  LocalEnvironment env("keyed");
  env.from_sequence(0, 2000, {.parallelism = 2})
      .key_by([](long long x) { return x % 13; })
      .map<KeyedCount>(Options{.name = "count", .parallelism = 4})
      .sink(out.sink());
  const JobResult result = env.execute();
  std::map<long long, std::vector<long long>> counts;
  for (const auto& line : out.sorted()) {
    const auto first = line.find(':'), second = line.rfind(':');
    const long long key = std::stoll(line.substr(0, first));
    const long long x = std::stoll(line.substr(second + 1));
    EXPECT_EQ(x % 13, key) << line;
    counts[key].push_back(std::stoll(line.substr(first + 1, second - first - 1)));
  }
  ASSERT_EQ(out.records.size(), 2000u);
  ASSERT_EQ(counts.size(), 13u);
  for (auto& [key, seen] : counts) {
    // 1..n without a gap or a repeat: each call counted once under its own key.
    std::sort(seen.begin(), seen.end());
    std::vector<long long> one_to_n(seen.size());
    std::iota(one_to_n.begin(), one_to_n.end(), 1);
    EXPECT_EQ(seen, one_to_n) << "key " << key;
  }
  int instances = 0;
  for (const auto& s : result.instances) {
    if (s.operator_name == "count") instances += s.records_in > 0;
  }
  EXPECT_EQ(instances, 4);
}

TEST(AsyncMapTest, CheckpointsTakenWhileCallsAreInFlightLeaveTheOutputExact) {
  // Chained to its source: the source's task takes each checkpoint with the
  // map's calls out and, often, inputs waiting for room.
  testing::TempDir dir;
  ExecutionConfig config;
  config.checkpoint_interval = 5ms;
  config.checkpoint_directory = dir.path();
  config.batch_size = 64;
  DelayedCalls calls;
  Arrivals<long long> out;
  LocalEnvironment env("checkpointed", config);
  env.from_sequence(0, 20'000)
      .map_async<long long>(
          [&calls](const long long& x, AsyncResult<long long> r) {
            calls.after(200us, [x, r] { r.complete(2 * x); });
          },
          AsyncOptions{.capacity = 32})
      .sink(out.sink());
  const JobResult result = env.execute();
  EXPECT_GE(result.checkpoints_completed, 2u);
  EXPECT_EQ(result.checkpoints_failed, 0u);
  EXPECT_EQ(out.records, iota(20'000, 2));
}

// The operator itself, driven by hand: what a snapshot holds and what a
// restore issues again.
struct Held {
  std::vector<std::pair<long long, AsyncResult<long long>>> calls;
  void complete(long long x) {
    for (auto& [input, result] : calls) {
      if (input == x) result.complete(x * 10);
    }
  }
};

struct Emitted final : detail::BatchReceiver<long long> {
  std::vector<long long> records;
  void receive(std::vector<long long>& batch) override {
    records.insert(records.end(), batch.begin(), batch.end());
  }
};

auto held_calls(Held& held, bool ordered) {
  const auto record = [&held](const long long& x, AsyncResult<long long> r) {
    held.calls.emplace_back(x, r);
  };
  using F = detail::CallableAsyncFunction<long long, long long, decltype(record)>;
  return std::pair{[=] { return F(record, AsyncOptions{.capacity = 8, .ordered = ordered}); },
                   std::type_identity<F>{}};
}

template <class Make, class F>
auto make_operator(const Make& make, std::type_identity<F>, detail::OperatorSetup& setup) {
  return std::make_unique<detail::AsyncMapOperator<long long, long long, F, detail::Unkeyed>>(
      make, detail::Unkeyed{}, setup);
}

class AsyncSnapshotTest : public ::testing::TestWithParam<bool> {
 protected:
  detail::OperatorSetup setup(Emitted& out) {
    detail::OperatorSetup s;
    s.identity.operator_name = "fetch";
    s.config = &config_;
    s.metrics = &metrics_;
    s.outputs = {&out};
    return s;
  }
  ExecutionConfig config_;
  detail::InstanceMetrics metrics_;
};

TEST_P(AsyncSnapshotTest, ASnapshotHoldsWhatWasNotEmittedAndARestoreIssuesItAgain) {
  const bool ordered = GetParam();
  Held before, after;
  Emitted out_before, out_after;
  detail::OperatorSnapshot snapshot;
  {
    auto [make, type] = held_calls(before, ordered);
    auto s = setup(out_before);
    auto op = make_operator(make, type, s);
    op->open();
    std::vector<long long> input = iota(20);
    op->receive(input);
    ASSERT_EQ(before.calls.size(), 8u) << "the capacity";
    EXPECT_TRUE(op->async_calls()->full());
    for (long long x : {1, 2, 0, 5}) before.complete(x);
    op->async_calls()->poll();  // emits 0 1 2 (and 5 unless ordered), issues 4 waiting
    EXPECT_EQ(before.calls.size(), ordered ? 11u : 12u);
    op->snapshot(snapshot, 1);
    // After the barrier: calls still complete and their results go out,
    // but a restore from this snapshot issues them again.
    for (long long x = 0; x < 12; ++x) before.complete(x);
    op->async_calls()->poll();
  }
  const std::vector<long long> emitted_before_barrier =
      ordered ? std::vector<long long>{0, 10, 20} : std::vector<long long>{10, 20, 0, 50};
  ASSERT_GE(out_before.records.size(), emitted_before_barrier.size());
  EXPECT_TRUE(std::equal(emitted_before_barrier.begin(), emitted_before_barrier.end(),
                         out_before.records.begin()));

  auto [make, type] = held_calls(after, ordered);
  auto s = setup(out_after);
  auto op = make_operator(make, type, s);
  op->open();
  op->restore(snapshot);
  op->async_calls()->poll();
  ASSERT_EQ(after.calls.size(), 8u);
  std::vector<long long> reissued;
  for (const auto& [x, result] : after.calls) reissued.push_back(x);
  const std::vector<long long> expected_first =
      ordered ? std::vector<long long>{3, 4, 5, 6, 7, 8, 9, 10}
              : std::vector<long long>{3, 4, 6, 7, 8, 9, 10, 11};
  EXPECT_EQ(reissued, expected_first) << "the calls out at the barrier, in input order";
  while (!op->async_calls()->idle()) {
    for (std::size_t i = 0; i < after.calls.size(); ++i) {
      after.calls[i].second.complete(after.calls[i].first * 10);
    }
    op->async_calls()->poll();
  }
  op->finish();
  // Exactly once: what left before the barrier, then what the restore made.
  std::vector<long long> all = emitted_before_barrier;
  all.insert(all.end(), out_after.records.begin(), out_after.records.end());
  if (ordered) {
    EXPECT_EQ(all, iota(20, 10));
  } else {
    std::sort(all.begin(), all.end());
    EXPECT_EQ(all, iota(20, 10));
  }
}

INSTANTIATE_TEST_SUITE_P(Ordering, AsyncSnapshotTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "ordered" : "unordered"; });

}  // namespace
}  // namespace sage
