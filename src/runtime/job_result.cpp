#include "sage/job_result.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace sage {

const char* to_string(JobState state) {
  switch (state) {
    case JobState::kPending:
      return "PENDING";
    case JobState::kRunning:
      return "RUNNING";
    case JobState::kFinished:
      return "FINISHED";
    case JobState::kStopped:
      return "STOPPED";
    case JobState::kFailed:
      return "FAILED";
  }
  return "UNKNOWN";
}

std::string JobResult::statistics_table() const {
  std::size_t name_width = 8;
  std::size_t node_width = 4;
  for (const auto& s : instances) {
    name_width = std::max(name_width, s.operator_name.size() + 6);
    node_width = std::max(node_width, s.node_id.size());
  }
  std::string table =
      fmt::format("{:<{}}  {:<{}}  {:>8}  {:>12}  {:>12}  {:>9}  {:>9}\n", "INSTANCE", name_width,
                  "NODE", node_width, "PID", "RECORDS_IN", "RECORDS_OUT", "BUSY_S", "BLOCKED_S");
  for (const auto& s : instances) {
    const std::string instance =
        fmt::format("{}[{}/{}]", s.operator_name, s.parallel_index, s.parallelism);
    table += fmt::format("{:<{}}  {:<{}}  {:>8}  {:>12}  {:>12}  {:>9.3f}  {:>9.3f}\n", instance,
                         name_width, s.node_id, node_width, s.process_id, s.records_in,
                         s.records_out, s.busy_seconds, s.blocked_seconds);
  }
  const std::string metrics = user_metrics_table();
  return metrics.empty() ? table : table + "\n" + metrics;
}

std::string JobResult::user_metrics_table() const {
  struct Row {
    std::string owner, metric, kind, value;
  };
  std::vector<Row> rows;
  for (auto first = instances.begin(); first != instances.end();) {
    const auto last = std::find_if(first, instances.end(), [&](const InstanceStats& s) {
      return s.operator_id != first->operator_id || s.operator_name != first->operator_name;
    });
    MetricsSnapshot merged;
    for (auto s = first; s != last; ++s) {
      for (const auto& [name, value] : s->user_metrics.counters) merged.counters[name] += value;
      for (const auto& [name, h] : s->user_metrics.histograms) merged.histograms[name].merge(h);
    }
    for (const auto& [name, value] : merged.counters) {
      rows.push_back({first->operator_name, name, "counter", std::to_string(value)});
    }
    for (auto s = first; s != last; ++s) {
      for (const auto& [name, value] : s->user_metrics.gauges) {
        rows.push_back(
            {fmt::format("{}[{}/{}]", s->operator_name, s->parallel_index, s->parallelism), name,
             "gauge", fmt::format("{:g}", value)});
      }
    }
    for (const auto& [name, h] : merged.histograms) {
      rows.push_back({first->operator_name, name, "histogram",
                      fmt::format("count {}, mean {:.4g}, p50 {:.4g}, p90 {:.4g}, p99 {:.4g}, "
                                  "max {:.4g}",
                                  h.count, h.mean(), h.p50, h.p90, h.p99, h.max)});
    }
    first = last;
  }
  if (rows.empty()) return "";
  std::size_t owner_width = 8, metric_width = 6;
  for (const auto& row : rows) {
    owner_width = std::max(owner_width, row.owner.size());
    metric_width = std::max(metric_width, row.metric.size());
  }
  std::string table = fmt::format("{:<{}}  {:<{}}  {:<9}  {}\n", "OPERATOR", owner_width, "METRIC",
                                  metric_width, "KIND", "VALUE");
  for (const auto& row : rows) {
    table += fmt::format("{:<{}}  {:<{}}  {:<9}  {}\n", row.owner, owner_width, row.metric,
                         metric_width, row.kind, row.value);
  }
  return table;
}

}  // namespace sage
