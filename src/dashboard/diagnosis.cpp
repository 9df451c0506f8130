#include "dashboard/diagnosis.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace sage::dashboard {
namespace {

struct OperatorFigures {
  std::string name;
  std::uint64_t records_in = 0;
  std::uint64_t busiest_in = 0;
  int busiest_instance = 0;
  int instances = 0;
  double backpressure = 0;  // the highest of its running instances
};

std::map<int, OperatorFigures> by_operator(const rpc::JobInfo& job) {
  std::map<int, OperatorFigures> operators;
  for (const auto& s : job.instances()) {
    OperatorFigures& o = operators[s.operator_id()];
    o.name = s.operator_name();
    o.records_in += s.records_in();
    ++o.instances;
    if (s.records_in() > o.busiest_in) {
      o.busiest_in = s.records_in();
      o.busiest_instance = s.parallel_index();
    }
    if (s.running()) o.backpressure = std::max(o.backpressure, s.backpressure());
  }
  return operators;
}

}  // namespace

std::vector<Finding> diagnose(const rpc::JobInfo& job, std::int64_t now_ms) {
  std::vector<Finding> findings;
  const auto operators = by_operator(job);
  const bool running = job.state() == rpc::JobInfo::RUNNING;
  for (const auto& [id, o] : operators) {
    if (o.instances > 1 && o.records_in >= kSkewMinRecords) {
      const double mean = static_cast<double>(o.records_in) / o.instances;
      if (static_cast<double>(o.busiest_in) > kSkewFactor * mean) {
        findings.push_back(
            {"skew", o.name, id,
             fmt::format("'{}' is skewed: instance {} received {} records, {:.1f}x the mean of "
                         "its {} instances; key_by a key with more distinct, evenly spread "
                         "values (or rebalance if the operator needs no key)",
                         o.name, o.busiest_instance, o.busiest_in,
                         static_cast<double>(o.busiest_in) / mean, o.instances)});
      }
    }
    if (!running || o.backpressure > kCalm) continue;
    for (const auto& edge : job.edges()) {
      if (edge.to_operator() != id) continue;
      const auto upstream = operators.find(edge.from_operator());
      if (upstream == operators.end() || upstream->second.backpressure < kBackpressured) continue;
      findings.push_back(
          {"bottleneck", o.name, id,
           fmt::format("'{}' is the bottleneck: '{}' upstream waits {:.0f}% of the time for it; "
                       "raise its parallelism or make it faster",
                       o.name, upstream->second.name, 100 * upstream->second.backpressure)});
      break;
    }
  }
  if (running && job.last_progress_ms() > 0 &&
      now_ms - job.last_progress_ms() >= std::chrono::milliseconds(kStuckAfter).count()) {
    findings.push_back(
        {"stuck", "", -1,
         fmt::format("no record has moved for {} s; look at its output (sage job logs {}) for an "
                     "operator that blocks",
                     (now_ms - job.last_progress_ms()) / 1000, job.job_id())});
  }
  return findings;
}

}  // namespace sage::dashboard
