#include "cluster/job_info.hpp"

#include <algorithm>
#include <tuple>

namespace sage::cluster {

JobResult to_job_result(const rpc::JobInfo& info) {
  JobResult result;
  result.job_id = info.job_id();
  result.job_name = info.name();
  result.error = info.error();
  if (info.state() == "FINISHED") {
    result.state = JobState::kFinished;
  } else if (info.state() == "STOPPED") {
    result.state = JobState::kStopped;
  } else if (info.state() == "FAILED") {
    result.state = JobState::kFailed;
  }
  if (info.finished_at_ms() > 0 && info.submitted_at_ms() > 0) {
    result.duration_seconds =
        static_cast<double>(info.finished_at_ms() - info.submitted_at_ms()) / 1e3;
  }
  for (const auto& s : info.instances()) {
    InstanceStats stats;
    stats.operator_name = s.operator_name();
    stats.parallel_index = s.parallel_index();
    stats.parallelism = s.parallelism();
    stats.node_id = s.node_id();
    stats.process_id = s.process_id();
    stats.records_in = s.records_in();
    stats.records_out = s.records_out();
    stats.busy_seconds = s.busy_seconds();
    stats.blocked_seconds = s.blocked_seconds();
    stats.errors = s.errors();
    result.instances.push_back(std::move(stats));
  }
  std::sort(result.instances.begin(), result.instances.end(),
            [](const InstanceStats& a, const InstanceStats& b) {
              return std::tie(a.operator_name, a.parallel_index) <
                     std::tie(b.operator_name, b.parallel_index);
            });
  return result;
}

void to_message(const InstanceStats& s, rpc::InstanceStats* out) {
  out->set_operator_name(s.operator_name);
  out->set_parallel_index(s.parallel_index);
  out->set_parallelism(s.parallelism);
  out->set_node_id(s.node_id);
  out->set_process_id(s.process_id);
  out->set_records_in(s.records_in);
  out->set_records_out(s.records_out);
  out->set_busy_seconds(s.busy_seconds);
  out->set_blocked_seconds(s.blocked_seconds);
  out->set_errors(s.errors);
}

}  // namespace sage::cluster
