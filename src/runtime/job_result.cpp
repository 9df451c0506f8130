#include "sage/job_result.hpp"

#include <fmt/format.h>

namespace sage {

const char* to_string(JobState state) {
  switch (state) {
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
  return table;
}

}  // namespace sage
