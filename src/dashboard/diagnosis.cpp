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

constexpr std::uint64_t kMiB = 1 << 20;

// The running task processes at or over kMemoryNearLimit of their limit.
void memory_findings(const rpc::JobInfo& job, std::vector<Finding>* findings) {
  for (const auto& p : job.processes()) {
    if (p.memory_limit_bytes() == 0) continue;  // no memory declared: no limit
    const double share =
        static_cast<double>(p.resident_bytes()) / static_cast<double>(p.memory_limit_bytes());
    if (share < kMemoryNearLimit) continue;
    // The operator, when all of the process's instances are of one.
    Finding finding{"memory", "", -1, p.process_index(), ""};
    bool first = true;
    for (const auto& s : job.instances()) {
      if (!s.running() || s.process_id() != p.pid() || s.node_id() != p.node_id()) continue;
      if (first) {
        finding.operator_name = s.operator_name();
        finding.operator_id = s.operator_id();
        first = false;
      } else if (s.operator_id() != finding.operator_id) {
        finding.operator_name.clear();
        finding.operator_id = -1;
        break;
      }
    }
    constexpr int kNamed = 4;  // instances named; the others are counted
    std::string instances;
    for (int i = 0; i < p.instances_size() && i < kNamed; ++i) {
      instances += (i == 0 ? "" : ", ") + p.instances(i);
    }
    if (p.instances_size() > kNamed) {
      instances += fmt::format(" and {} more", p.instances_size() - kNamed);
    }
    finding.message = fmt::format(
        "task process {} on node '{}' ({}) uses {} MiB, {:.0f}% of its {} MiB limit (the sum of "
        "its instances' resources.memory), and is killed at the limit; declare more "
        "resources.memory for its operators or make them keep less in memory",
        p.process_index(), p.node_id(), instances, p.resident_bytes() / kMiB, 100 * share,
        p.memory_limit_bytes() / kMiB);
    findings->push_back(std::move(finding));
  }
}

}  // namespace

nlohmann::json findings_document(const std::vector<Finding>& findings) {
  nlohmann::json document = nlohmann::json::array();
  for (const auto& f : findings) {
    document.push_back({{"kind", f.kind},
                        {"operator", f.operator_name},
                        {"operator_id", f.operator_id},
                        {"process", f.process_index},
                        {"message", f.message}});
  }
  return document;
}

std::vector<Finding> diagnose(const rpc::JobInfo& job, std::int64_t now_ms) {
  std::vector<Finding> findings;
  const auto operators = by_operator(job);
  const bool running = job.state() == rpc::JobInfo::RUNNING;
  for (const auto& [id, o] : operators) {
    if (o.instances > 1 && o.records_in >= kSkewMinRecords) {
      const double mean = static_cast<double>(o.records_in) / o.instances;
      if (static_cast<double>(o.busiest_in) > kSkewFactor * mean) {
        findings.push_back(
            {"skew", o.name, id, -1,
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
          {"bottleneck", o.name, id, -1,
           fmt::format("'{}' is the bottleneck: '{}' upstream waits {:.0f}% of the time for it; "
                       "raise its parallelism or make it faster",
                       o.name, upstream->second.name, 100 * upstream->second.backpressure)});
      break;
    }
  }
  if (running) memory_findings(job, &findings);
  if (running && job.last_progress_ms() > 0 &&
      now_ms - job.last_progress_ms() >= std::chrono::milliseconds(kStuckAfter).count()) {
    findings.push_back(
        {"stuck", "", -1, -1,
         fmt::format("no record has moved for {} s; look at its output (sage job logs {}) for an "
                     "operator that blocks",
                     (now_ms - job.last_progress_ms()) / 1000, job.job_id())});
  }
  return findings;
}

}  // namespace sage::dashboard
