// What may be wrong with a running job, read from its statistics: data skew,
// the bottleneck where backpressure starts, and a job that stopped making
// progress. Shared by the dashboard's API and `sage job status`. Pure.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

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

struct Finding {
  std::string kind;           // "skew", "bottleneck" or "stuck"
  std::string operator_name;  // empty for the job as a whole
  int operator_id = -1;       // InstanceStats.operator_id; -1 for the job
  std::string message;        // one line, with what to do
};

// The findings for `job` (its instances, edges and progress) at `now_ms`,
// by operator in program order, the job's own last.
std::vector<Finding> diagnose(const rpc::JobInfo& job, std::int64_t now_ms);

}  // namespace sage::dashboard
