#include "sage/metrics.hpp"

#include <gtest/gtest.h>

#include <sage/sage.hpp>

#include <atomic>
#include <chrono>
#include <thread>

#include "runtime/process_job.hpp"
#include "support/collect.hpp"

namespace sage {
namespace {

TEST(HistogramTest, QuantilesWithinBucketPrecision) {
  Histogram h;
  for (int i = 1; i <= 1000; ++i) h.record(i * 1e-6);  // 1 us .. 1 ms
  const auto s = h.snapshot();
  EXPECT_EQ(s.count, 1000u);
  EXPECT_DOUBLE_EQ(s.min, 1e-6);
  EXPECT_DOUBLE_EQ(s.max, 1e-3);
  EXPECT_NEAR(s.mean(), 500.5e-6, 1e-9);
  EXPECT_NEAR(s.p50, 500e-6, 500e-6 * 0.13);
  EXPECT_NEAR(s.p99, 990e-6, 990e-6 * 0.13);
  EXPECT_LE(s.p50, s.p90);
  EXPECT_LE(s.p90, s.p99);
}

TEST(HistogramTest, EmptyAndNonPositiveValues) {
  Histogram h;
  EXPECT_EQ(h.snapshot().count, 0u);
  EXPECT_EQ(h.quantile(0.5), 0.0);
  h.record(0);
  h.record(-3);
  EXPECT_EQ(h.snapshot().count, 2u);
  EXPECT_EQ(h.snapshot().min, -3);
}

TEST(HistogramTest, MergedSnapshotsHaveTheQuantilesOfAllTheirValues) {
  Histogram low, high, all;
  for (int i = 1; i <= 900; ++i) {
    low.record(i * 1e-3);
    all.record(i * 1e-3);
  }
  for (int i = 1; i <= 100; ++i) {
    high.record(10 + i);
    all.record(10 + i);
  }
  HistogramSnapshot merged;
  merged.merge(high.snapshot());
  merged.merge(low.snapshot());
  const HistogramSnapshot expected = all.snapshot();
  EXPECT_EQ(merged.count, 1000u);
  EXPECT_DOUBLE_EQ(merged.sum, expected.sum);
  EXPECT_EQ(merged.min, expected.min);
  EXPECT_EQ(merged.max, expected.max);
  EXPECT_EQ(merged.buckets, expected.buckets);
  EXPECT_EQ(merged.p50, expected.p50);
  EXPECT_EQ(merged.p90, expected.p90);
  EXPECT_EQ(merged.p99, expected.p99);
  EXPECT_GT(merged.p99, 10.0);  // from the second histogram
}

TEST(MetricsTest, UserMetricsAndBuiltInCountersReachTheResult) {
  class Measured : public Function {
   public:
    void open(RuntimeContext& ctx) override {
      ctx_ = &ctx;
      seen_ = &ctx.metrics().counter("seen");
    }
    int map(int x) {
      seen_->inc();
      ctx_->metrics().record("processing_time", 0.001);
      ctx_->metrics().gauge("last").set(x);
      return x;
    }

   private:
    RuntimeContext* ctx_ = nullptr;
    Counter* seen_ = nullptr;
  };
  LocalEnvironment env("metrics");
  env.from_collection({1, 2, 3, 4, 5, 6})
      .map<Measured>(Options{.name = "measured", .parallelism = 2})
      .filter([](int x) { return x % 2 == 0; }, {.name = "even", .parallelism = 2})
      .sink([](int) {}, {.name = "out"});
  const JobResult result = env.execute();
  std::int64_t seen = 0;
  std::uint64_t histogram_count = 0, even_in = 0, even_out = 0, out_in = 0;
  for (const auto& s : result.instances) {
    if (s.operator_name == "measured") {
      seen += s.user_metrics.counters.at("seen");
      histogram_count += s.user_metrics.histograms.at("processing_time").count;
      EXPECT_EQ(s.records_in, s.records_out);
    }
    if (s.operator_name == "even") {
      even_in += s.records_in;
      even_out += s.records_out;
    }
    if (s.operator_name == "out") out_in += s.records_in;
    EXPECT_EQ(s.process_id, static_cast<int>(getpid()));
    EXPECT_FALSE(s.node_id.empty());
  }
  EXPECT_EQ(seen, 6);
  EXPECT_EQ(histogram_count, 6u);
  EXPECT_EQ(even_in, 6u);
  EXPECT_EQ(even_out, 3u);
  EXPECT_EQ(out_in, 3u);
  EXPECT_NE(result.statistics_table().find("measured[1/2]"), std::string::npos);
}

// Builds the graph only, to run it with a ProcessJob directly.
class GraphOnly : public Environment {
 public:
  explicit GraphOnly(ExecutionConfig config) : Environment("live", config) {}
  std::string submit(bool) override { return ""; }
  JobResult wait() override { return {}; }
  void stop() override {}
  std::shared_ptr<const detail::LogicalGraph> graph() {
    seal();
    return graph_;
  }
};

TEST(LiveStatisticsTest, AWaitForRoomDownstreamCountsWhileItLasts) {
  ExecutionConfig config;
  config.batch_size = 1;
  config.channel_capacity = 1;
  GraphOnly env(config);
  std::atomic<bool> release{false};
  env.from_source(
         [n = 0LL]() mutable -> std::optional<long long> {
           return n < 100 ? std::optional(n++) : std::nullopt;
         },
         {.name = "source"})
      .rebalance()
      .sink(
          [&release](long long) {
            while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
          },
          {.name = "stuck"});
  runtime::ProcessJob job(env.graph(), config, "job-live");
  job.start();
  const auto source_blocked = [&job] {
    for (const auto& s : job.statistics().instances) {
      if (s.operator_name == "source") return s.blocked_seconds;
    }
    return -1.0;
  };
  // The source fills the queue and waits; its wait shows before it ends.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (source_blocked() < 0.2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const double blocked = source_blocked();
  const auto live = job.statistics();
  release = true;
  job.wait();
  EXPECT_GE(blocked, 0.2) << "a wait in progress does not show in live statistics";
  for (const auto& s : live.instances) EXPECT_TRUE(s.running) << s.operator_name;
}

}  // namespace
}  // namespace sage
