// Live statistics of a running job: the frames a task process writes to its
// worker, the rates computed from two consecutive snapshots, and the user
// metrics the instances' statistics carry.
#include <gtest/gtest.h>
#include <unistd.h>

#include <regex>

#include "cluster/job_info.hpp"
#include "cluster/task_process.hpp"
#include "sage/error.hpp"

namespace sage::cluster {
namespace {

TEST(ResultFramesTest, FramesArriveWholeAndInOrderWhateverTheReadsSplit) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_TRUE(write_result_frame(fds[1], ResultFrameKind::kProgress, "first"));
  ASSERT_TRUE(write_result_frame(fds[1], ResultFrameKind::kProgress, ""));
  ASSERT_TRUE(write_result_frame(fds[1], ResultFrameKind::kExit, std::string(1000, 'x')));
  close(fds[1]);
  std::string bytes;
  char c;
  while (read(fds[0], &c, 1) == 1) bytes += c;
  close(fds[0]);

  // Fed one byte at a time, as a pipe may deliver them.
  std::string buffer;
  std::vector<std::pair<ResultFrameKind, std::string>> frames;
  for (char byte : bytes) {
    buffer += byte;
    ResultFrameKind kind;
    std::string payload;
    while (take_result_frame(buffer, &kind, &payload)) frames.emplace_back(kind, payload);
  }
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0], std::make_pair(ResultFrameKind::kProgress, std::string("first")));
  EXPECT_EQ(frames[1], std::make_pair(ResultFrameKind::kProgress, std::string()));
  EXPECT_EQ(frames[2], std::make_pair(ResultFrameKind::kExit, std::string(1000, 'x')));
  EXPECT_TRUE(buffer.empty());
}

TEST(ResultFramesTest, ForeignBytesAndOversizedFramesAreErrors) {
  std::string garbage = "hello world";
  ResultFrameKind kind;
  std::string payload;
  EXPECT_THROW(take_result_frame(garbage, &kind, &payload), Error);
  std::string huge = {'P', '\xff', '\xff', '\xff', '\x7f'};
  EXPECT_THROW(take_result_frame(huge, &kind, &payload), Error);
}

InstanceStats instance(const std::string& name, int index, std::uint64_t in, std::uint64_t out,
                       double blocked) {
  InstanceStats s;
  s.operator_name = name;
  s.parallel_index = index;
  s.parallelism = 2;
  s.records_in = in;
  s.records_out = out;
  s.blocked_seconds = blocked;
  s.running = true;
  return s;
}

TEST(ProgressReportTest, RatesAndBackpressureAreOverTheTimeSinceTheLastReport) {
  JobResult before, now;
  before.duration_seconds = 1.0;
  before.instances = {instance("map", 0, 100, 100, 0.1), instance("map", 1, 0, 0, 0)};
  now.duration_seconds = 3.0;
  now.instances = {instance("map", 0, 500, 300, 1.1), instance("map", 1, 0, 0, 0)};

  const rpc::ProgressReport first = progress_report(before, nullptr);
  ASSERT_EQ(first.instances_size(), 2);
  EXPECT_EQ(first.instances(0).records_in(), 100u);
  EXPECT_EQ(first.instances(0).records_in_per_second(), 0.0);  // no interval yet
  EXPECT_TRUE(first.instances(0).running());

  const rpc::ProgressReport second = progress_report(now, &before);
  ASSERT_EQ(second.instances_size(), 2);
  EXPECT_DOUBLE_EQ(second.instances(0).records_in_per_second(), 200.0);
  EXPECT_DOUBLE_EQ(second.instances(0).records_out_per_second(), 100.0);
  EXPECT_DOUBLE_EQ(second.instances(0).backpressure(), 0.5);
  EXPECT_EQ(second.instances(1).records_in_per_second(), 0.0);
}

TEST(ProgressReportTest, JobResultsListInstancesInProgramOrder) {
  rpc::JobInfo info;
  for (const auto& [name, id, index] : {std::tuple{"sink", 2, 1}, std::tuple{"source", 0, 0},
                                        std::tuple{"sink", 2, 0}, std::tuple{"map", 1, 0}}) {
    rpc::InstanceStats* s = info.add_instances();
    s->set_operator_name(name);
    s->set_operator_id(id);
    s->set_parallel_index(index);
  }
  const JobResult result = to_job_result(info);
  std::vector<std::string> order;
  for (const auto& s : result.instances) {
    order.push_back(s.operator_name + std::to_string(s.parallel_index));
  }
  EXPECT_EQ(order, (std::vector<std::string>{"source0", "map0", "sink0", "sink1"}));
}

TEST(ProgressReportTest, UserMetricsTravelWithTheInstancesAndMergePerOperator) {
  JobResult now;
  now.duration_seconds = 1.0;
  for (int index : {0, 1}) {
    InstanceStats s = instance("measured", index, 10, 10, 0);
    Metrics metrics;
    metrics.counter("seen").inc(10 + index);
    metrics.gauge("last").set(index == 0 ? 7.5 : 9);
    for (int v = 1; v <= 10; ++v) metrics.record("value", v * (index + 1));
    s.user_metrics = metrics.snapshot();
    now.instances.push_back(std::move(s));
  }
  // A progress report (and an exit report, through the same to_message) carries them.
  rpc::JobInfo info;
  *info.mutable_instances() = progress_report(now, nullptr).instances();
  const JobResult result = to_job_result(info);
  ASSERT_EQ(result.instances.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const MetricsSnapshot& sent = now.instances[i].user_metrics;
    const MetricsSnapshot& got = result.instances[i].user_metrics;
    EXPECT_EQ(got.counters, sent.counters);
    EXPECT_EQ(got.gauges, sent.gauges);
    const HistogramSnapshot& h = got.histograms.at("value");
    EXPECT_EQ(h.count, 10u);
    EXPECT_EQ(h.sum, sent.histograms.at("value").sum);
    EXPECT_EQ(h.p90, sent.histograms.at("value").p90);
    EXPECT_EQ(h.buckets, sent.histograms.at("value").buckets);
  }

  // Per operator: counters summed, histograms merged, gauges per instance.
  const std::string table = result.user_metrics_table();
  const auto has = [&](const std::string& pattern) {
    return std::regex_search(table, std::regex(pattern));
  };
  EXPECT_TRUE(has(R"(\nmeasured +seen +counter +21\n)")) << table;
  EXPECT_TRUE(has(R"(\nmeasured\[0/2\] +last +gauge +7\.5\n)")) << table;
  EXPECT_TRUE(has(R"(\nmeasured\[1/2\] +last +gauge +9\n)")) << table;
  EXPECT_TRUE(has(R"(\nmeasured +value +histogram +count 20, mean 8\.25, p50 \S+, p90 \S+, )"
                  R"(p99 \S+, max 20\n)"))
      << table;
  EXPECT_NE(result.statistics_table().find(table), std::string::npos);
}

}  // namespace
}  // namespace sage::cluster
