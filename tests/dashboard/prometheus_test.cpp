#include "dashboard/prometheus.hpp"

#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <sstream>

#include "dashboard/fixtures.hpp"

namespace sage::dashboard {
namespace {

using testing::add_instance;
using testing::running_job;

constexpr std::int64_t kNow = 2'000'000;

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

rpc::ClusterInfo one_node() {
  rpc::ClusterInfo cluster;
  auto* node = cluster.add_nodes();
  node->set_node_id("head");
  node->set_alive(true);
  node->mutable_total()->set_num_cpus(8);
  node->mutable_total()->set_num_gpus(2);
  node->mutable_total()->set_memory_bytes(16ull << 30);
  node->mutable_used()->set_num_cpus(2.5);
  node->mutable_used()->set_num_gpus(1);
  node->mutable_used()->set_memory_bytes(1ull << 30);
  return cluster;
}

TEST(Prometheus, NodesHaveTheirResourcesHeldAndFree) {
  const std::string text = render_metrics(one_node(), {}, kNow);
  EXPECT_TRUE(has_line(text, "sage_node_up{node=\"head\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "sage_node_cpus_held{node=\"head\"} 2.5")) << text;
  EXPECT_TRUE(has_line(text, "sage_node_cpus_free{node=\"head\"} 5.5")) << text;
  EXPECT_TRUE(has_line(text, "sage_node_gpus_free{node=\"head\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "sage_node_memory_free_bytes{node=\"head\"} 16106127360")) << text;
}

TEST(Prometheus, InstancesJobsCheckpointsAndUserMetricsInBaseUnits) {
  rpc::JobInfo job = running_job(kNow - 10'000);
  job.set_restarts(2);
  job.mutable_checkpoints()->set_completed(5);
  job.mutable_checkpoints()->set_last_id(5);
  job.mutable_checkpoints()->set_last_duration_ms(250);
  job.mutable_checkpoints()->set_last_bytes(4096);
  job.mutable_checkpoints()->set_last_completed_at_ms(kNow - 3000);
  auto& s = add_instance(job, 1, "work", 3, 100);
  s.set_busy_seconds(4);
  s.set_blocked_seconds(1.5);
  s.set_queue_batches(7);
  s.set_busy(0.25);
  (*s.mutable_counters())["tokens.used"] = 42;
  (*s.mutable_gauges())["temperature"] = 0.5;
  auto& h = (*s.mutable_histograms())["latency"];
  h.set_count(10);
  h.set_sum(2.5);
  h.set_p50(0.2);
  h.set_p90(0.4);
  h.set_p99(0.5);
  auto* process = job.add_processes();
  process->set_process_index(2);
  process->set_node_id("head");
  process->set_resident_bytes(123456789);
  process->set_memory_limit_bytes(1 << 30);
  const std::string text = render_metrics(rpc::ClusterInfo{}, {job}, kNow);
  const std::string labels = R"({job="job-1",operator="work",instance="3",node="head"})";
  for (
      const std::string& line : {
          "sage_instance_records_in_total" + labels + " 100",
          "sage_instance_busy_seconds_total" + labels + " 4",
          "sage_instance_backpressured_seconds_total" + labels + " 1.5",
          "sage_instance_idle_seconds_total" + labels + " 4.5",  // 10 s of life
          "sage_instance_queue_batches" + labels + " 7",
          "sage_instance_busy_ratio" + labels + " 0.25",
          "sage_user_tokens_used_total" + labels + " 42",
          "sage_user_temperature" + labels + " 0.5",
          std::string(
              R"(sage_user_latency{job="job-1",operator="work",instance="3",node="head",quantile="0.9"} 0.4)"),
          "sage_user_latency_sum" + labels + " 2.5",
          "sage_user_latency_count" + labels + " 10",
          std::string(R"(sage_job_state{job="job-1",state="RUNNING"} 1)"),
          std::string(R"(sage_job_state{job="job-1",state="FAILED"} 0)"),
          std::string(R"(sage_job_restarts_total{job="job-1"} 2)"),
          std::string(R"(sage_job_checkpoints_completed_total{job="job-1"} 5)"),
          std::string(R"(sage_job_last_checkpoint_duration_seconds{job="job-1"} 0.25)"),
          std::string(R"(sage_job_last_checkpoint_size_bytes{job="job-1"} 4096)"),
          std::string(R"(sage_job_last_checkpoint_age_seconds{job="job-1"} 3)"),
          std::string(
              R"(sage_process_resident_memory_bytes{job="job-1",process="2",node="head"} 123456789)"),
          std::string(
              R"(sage_process_memory_limit_bytes{job="job-1",process="2",node="head"} 1073741824)"),
          std::string("# TYPE sage_user_latency summary"),
          std::string("# TYPE sage_instance_records_in_total counter"),
      }) {
    EXPECT_TRUE(has_line(text, line)) << line << "\nnot in\n" << text;
  }
}

TEST(Prometheus, EachFamilyIsOneBlockAndEveryNameIsValid) {
  rpc::JobInfo job = running_job(kNow - 1000);
  for (int i = 0; i < 3; ++i) add_instance(job, 1, "work", i, 10);
  rpc::JobInfo other = job;
  other.set_job_id("job-2");
  const std::string text = render_metrics(one_node(), {job, other}, kNow);
  std::istringstream lines(text);
  std::string line, current;
  std::set<std::string> finished;
  static const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? \S+$)");
  while (std::getline(lines, line)) {
    if (line.starts_with("# TYPE ")) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(finished.insert(name).second) << name << " has two blocks";
      current = name;
      continue;
    }
    if (line.starts_with("# HELP ")) continue;
    std::smatch match;
    ASSERT_TRUE(std::regex_match(line, match, sample)) << line;
    EXPECT_TRUE(match[1].str().starts_with(current)) << line << " outside its family " << current;
  }
}

TEST(Prometheus, LabelValuesAreEscapedAndUserNamesMadeValid) {
  EXPECT_EQ(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(metric_name_part("tokens.used-per s"), "tokens_used_per_s");
  EXPECT_EQ(metric_name_part("9lives"), "_9lives");
  EXPECT_EQ(metric_name_part(""), "_");
  rpc::JobInfo job = running_job(kNow);
  add_instance(job, 1, "say \"hi\"\n", 0, 1);
  const std::string text = render_metrics(rpc::ClusterInfo{}, {job}, kNow);
  EXPECT_NE(text.find(R"(operator="say \"hi\"\n")"), std::string::npos) << text;
}

TEST(Prometheus, AnEndedJobsSeriesGoAwayAfterTheRetention) {
  rpc::JobInfo job = running_job(kNow - 100'000);
  job.set_state(rpc::JobInfo::FINISHED);
  job.set_finished_at_ms(kNow - 1000);
  add_instance(job, 1, "work", 0, 1);
  EXPECT_NE(render_metrics({}, {job}, kNow, std::chrono::seconds(2)).find("job-1"),
            std::string::npos);
  EXPECT_EQ(render_metrics({}, {job}, kNow, std::chrono::milliseconds(999)).find("job-1"),
            std::string::npos);
}

}  // namespace
}  // namespace sage::dashboard
