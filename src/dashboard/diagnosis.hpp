// What may be wrong with a running job, read from its statistics: data skew,
// the bottleneck where backpressure starts, a job that stopped making
// progress, and a task process close to its memory limit. Shared by the
// dashboard's API and `sage job status`. Pure.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sage.pb.h"

namespace sage::dashboard {

// Skew: the busiest instance of an operator received more than this many
// times its operator's mean, with at least kSkewMinRecords records in all.
constexpr double kSkewFactor = 2.0;
constexpr std::uint64_t kSkewMinRecords = 100;
// Bottleneck: an operator that waits for room downstream at most kCalm of the
// time while an operator feeding it waits at least kBackpressured of it.
constexpr double kBackpressured = 0.5;
constexpr double kCalm = 0.2;
// Stuck: a running job whose records have not moved for this long.
constexpr std::chrono::seconds kStuckAfter{60};
// Memory: a task process whose resident memory is at least this share of its
// limit, the sum of its instances' resources.memory (its worker kills it at
// the limit).
constexpr double kMemoryNearLimit = 0.9;

struct Finding {
  std::string kind;           // "skew", "bottleneck", "stuck" or "memory"
  std::string operator_name;  // empty for the job as a whole, or a process of several operators
  int operator_id = -1;       // InstanceStats.operator_id; -1 then
  int process_index = -1;     // for "memory": the task process (ProcessStats.process_index)
  std::string message;        // one line, with what to do
};

// The findings for `job` (its instances, edges, progress and processes) at
// `now_ms`: by operator in program order, then the processes' memory, then
// the job's own.
std::vector<Finding> diagnose(const rpc::JobInfo& job, std::int64_t now_ms);

// The findings as the JSON of /api/v1/jobs/<id> and `sage job status
// --format json`: [{"kind", "operator", "operator_id", "process", "message"}].
nlohmann::json findings_document(const std::vector<Finding>& findings);

}  // namespace sage::dashboard
