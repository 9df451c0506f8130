// The dataflow the cross-process tests run, built identically in the test
// and in every task process (the program is the job): numbers through a
// rebalanced map, a keyed running count, and a sink that prints each record.
#pragma once

#include <cstdio>
#include <string>

#include <sage/sage.hpp>

namespace sage::testing {

// Prints "record <key> <count>" lines, whole lines at a time.
class PrintingSink : public Function {
 public:
  void sink(const std::pair<long long, long long>& r) {
    std::printf("record %lld %lld\n", r.first, r.second);
  }
  void close() override { std::fflush(stdout); }
};

class KeyedCount : public Function {
 public:
  void open(RuntimeContext& ctx) override { count_.emplace(ctx.value_state<long long>("n")); }
  std::pair<long long, long long> map(long long key) { return {key, ++count_->get_or_init(0)}; }

 private:
  std::optional<ValueState<long long>> count_;
};

inline void build_sample_job(Environment& env, long long records) {
  env.from_source(
         [n = 0LL, records]() mutable -> std::optional<long long> {
           if (n >= records) return std::nullopt;
           return n++;
         },
         {.name = "numbers"})
      .map([](long long x) { return x % 100; }, {.name = "bucket", .parallelism = 3})
      .key_by([](long long k) { return k; })
      .map<KeyedCount>(Options{.name = "count", .parallelism = 2})
      .sink<PrintingSink>(Options{.name = "print", .parallelism = 2});
}

// An environment that only builds: the task process takes its graph.
class BuildOnlyEnvironment : public Environment {
 public:
  BuildOnlyEnvironment() : Environment("sample", ExecutionConfig{}) {}
  std::string submit(bool) override { return ""; }
  JobResult wait() override { return {}; }
  void stop() override {}
  std::shared_ptr<const detail::LogicalGraph> graph() const { return graph_; }
};

}  // namespace sage::testing
