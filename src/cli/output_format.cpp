#include "cli/output_format.hpp"

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>
#include <iostream>

#include "cluster/cluster_config.hpp"
#include "cluster/job_info.hpp"
#include "dashboard/diagnosis.hpp"

namespace sage::cli {
namespace {

// A Unix time in ms as local "YYYY-MM-DD HH:MM:SS"; "-" for none (0).
std::string format_time(std::int64_t ms) {
  if (ms <= 0) return "-";
  const std::time_t seconds = ms / 1000;
  std::tm local{};
  localtime_r(&seconds, &local);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &local);
  return text;
}

// From submission to the end (or now, while it runs) as "12.3 s"; "-" before.
std::string format_duration(const rpc::JobInfo& job) {
  if (job.submitted_at_ms() <= 0) return "-";
  const std::int64_t end = job.finished_at_ms() > 0 ? job.finished_at_ms() : cluster::now_ms();
  return fmt::format("{:.1f} s", static_cast<double>(end - job.submitted_at_ms()) / 1e3);
}

// The message as JSON with the proto's field names, every field present.
std::string to_json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

std::string resources_cell(double used, double total) {
  return fmt::format("{:g}/{:g}", used, total);
}

// The instances of a running job: where each runs, whether it still does,
// and over the last second its rates, the share of the time it waited for
// room downstream, and its input queue now.
std::string live_statistics_table(const rpc::JobInfo& job) {
  std::size_t name_width = 8, node_width = 4;
  for (const auto& s : job.instances()) {
    name_width = std::max(name_width, s.operator_name().size() + 6);
    node_width = std::max(node_width, s.node_id().size());
  }
  std::string table =
      fmt::format("{:<{}}  {:<{}}  {:>8}  {:<7}  {:>12}  {:>12}  {:>10}  {:>10}  {:>12}  {:>9}\n",
                  "INSTANCE", name_width, "NODE", node_width, "PID", "STATE", "RECORDS_IN",
                  "RECORDS_OUT", "IN/S", "OUT/S", "BACKPRESSURE", "QUEUE");
  for (const auto& s : job.instances()) {
    const std::string queue =
        s.queue_capacity_batches() == 0
            ? "-"
            : fmt::format("{}/{}", s.queue_batches(), s.queue_capacity_batches());
    table += fmt::format(
        "{:<{}}  {:<{}}  {:>8}  {:<7}  {:>12}  {:>12}  {:>10.4g}  {:>10.4g}  {:>11.0f}%  {:>9}\n",
        fmt::format("{}[{}/{}]", s.operator_name(), s.parallel_index(), s.parallelism()),
        name_width, s.node_id(), node_width, s.process_id(), s.running() ? "running" : "ended",
        s.records_in(), s.records_out(), s.records_in_per_second(), s.records_out_per_second(),
        s.backpressure() * 100, queue);
  }
  return table;
}

}  // namespace

std::string format_bytes(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, units[unit]);
}

void print_as(const std::string& format, const google::protobuf::Message& message,
              const std::function<std::string()>& table) {
  if (format == "json") {
    std::cout << to_json(message) << std::endl;
  } else {
    std::cout << table();
  }
}

std::string job_status_json(const rpc::JobInfo& job) {
  auto document = nlohmann::ordered_json::parse(to_json(job));
  document["diagnosis"] = dashboard::findings_document(dashboard::diagnose(job, cluster::now_ms()));
  return document.dump(1);
}

std::string cluster_table(const rpc::ClusterInfo& info, const std::string& address) {
  std::string table = fmt::format("{:<22} {:<16} {:<6} {:>9} {:>6} {:>22} {:>10}\n", "NODE",
                                  "ADDRESS", "STATE", "CPUS", "GPUS", "MEMORY", "HEARTBEAT");
  int alive = 0;
  for (const auto& node : info.nodes()) {
    alive += node.alive();
    const double ago = static_cast<double>(cluster::now_ms() - node.last_heartbeat_ms()) / 1e3;
    table += fmt::format(
        "{:<22} {:<16} {:<6} {:>9} {:>6} {:>22} {:>10}\n", node.node_id(), node.address(),
        node.alive() ? "alive" : "dead",
        resources_cell(node.used().num_cpus(), node.total().num_cpus()),
        fmt::format("{}/{}", node.used().num_gpus(), node.total().num_gpus()),
        format_bytes(node.used().memory_bytes()) + "/" + format_bytes(node.total().memory_bytes()),
        fmt::format("{:.1f} s ago", ago));
  }
  table += fmt::format("{} node{} ({} alive), {} job{} running or pending, JobManager at {}\n",
                       info.nodes_size(), info.nodes_size() == 1 ? "" : "s", alive,
                       info.running_jobs_size(), info.running_jobs_size() == 1 ? "" : "s", address);
  return table;
}

std::string job_list_table(const rpc::JobList& list) {
  std::size_t name_width = 4;
  for (const auto& job : list.jobs()) name_width = std::max(name_width, job.name().size());
  std::string table = fmt::format("{:<18} {:<{}} {:<9} {:<20} {:>10}  {}\n", "JOB", "NAME",
                                  name_width, "STATE", "SUBMITTED", "DURATION", "NODES");
  for (const auto& job : list.jobs()) {
    std::string nodes;
    for (const auto& node : job.nodes()) nodes += (nodes.empty() ? "" : ",") + node;
    table +=
        fmt::format("{:<18} {:<{}} {:<9} {:<20} {:>10}  {}\n", job.job_id(), job.name(), name_width,
                    rpc::JobInfo::State_Name(job.state()), format_time(job.submitted_at_ms()),
                    format_duration(job), nodes.empty() ? "-" : nodes);
  }
  if (list.jobs().empty()) table += "(no jobs yet)\n";
  return table;
}

std::string job_description(const rpc::JobInfo& job) {
  std::string nodes;
  for (const auto& node : job.nodes()) nodes += (nodes.empty() ? "" : ", ") + node;
  std::string text = fmt::format("job:       {} ({})\nstate:     {}\n", job.job_id(), job.name(),
                                 rpc::JobInfo::State_Name(job.state()));
  if (!job.pending_reason().empty()) text += "waiting:   " + job.pending_reason() + '\n';
  if (!job.error().empty()) text += "error:     " + job.error() + '\n';
  text += fmt::format("submitted: {}\nstarted:   {}\nfinished:  {}\nduration:  {}\n",
                      format_time(job.submitted_at_ms()), format_time(job.started_at_ms()),
                      format_time(job.finished_at_ms()), format_duration(job));
  if (!nodes.empty()) text += "nodes:     " + nodes + '\n';
  const auto& checkpoints = job.checkpoints();
  if (checkpoints.last_id() != 0) {
    const auto age_ms =
        std::max<std::int64_t>(0, cluster::now_ms() - checkpoints.last_completed_at_ms());
    text += fmt::format(
        "checkpoint: last #{} completed {:.1f} s ago in {} ms, {} bytes, aligned {} ms; {} "
        "completed, {} failed in all\n",
        checkpoints.last_id(), static_cast<double>(age_ms) / 1e3, checkpoints.last_duration_ms(),
        checkpoints.last_bytes(), checkpoints.last_alignment_ms(), checkpoints.completed(),
        checkpoints.failed());
  } else if (checkpoints.failed() > 0) {
    text += fmt::format("checkpoint: none completed ({} failed)\n", checkpoints.failed());
  }
  if (!checkpoints.last_failure().empty()) {
    text += "            last failed: " + checkpoints.last_failure() + '\n';
  }
  if (job.restarts() > 0) {
    text += fmt::format("restarts:  {}\n", job.restarts());
    for (const auto& cause : job.restart_causes()) text += "  after:   " + cause + '\n';
  }
  for (const auto& finding : dashboard::diagnose(job, cluster::now_ms())) {
    text += fmt::format("{:<10} {}\n", finding.kind + ":", finding.message);
  }
  if (job.instances_size() > 0 && job.state() == rpc::JobInfo::RUNNING) {
    text += '\n' + live_statistics_table(job);
    const std::string metrics = cluster::to_job_result(job).user_metrics_table();
    if (!metrics.empty()) text += '\n' + metrics;
  } else if (job.instances_size() > 0) {
    text += '\n' + cluster::to_job_result(job).statistics_table();
  }
  return text;
}

}  // namespace sage::cli
