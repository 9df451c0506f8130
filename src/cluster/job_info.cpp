#include "cluster/job_info.hpp"

#include <algorithm>
#include <tuple>

#include "net/rpc.hpp"

namespace sage::cluster {
namespace {

MetricsSnapshot user_metrics_of(const rpc::InstanceStats& s) {
  MetricsSnapshot metrics;
  metrics.counters.insert(s.counters().begin(), s.counters().end());
  metrics.gauges.insert(s.gauges().begin(), s.gauges().end());
  for (const auto& [name, h] : s.histograms()) {
    HistogramSnapshot& out = metrics.histograms[name];
    out.count = h.count();
    out.sum = h.sum();
    out.min = h.min();
    out.max = h.max();
    out.p50 = h.p50();
    out.p90 = h.p90();
    out.p99 = h.p99();
    for (const auto& bucket : h.buckets()) out.buckets.emplace_back(bucket.index(), bucket.count());
  }
  return metrics;
}

void to_message(const MetricsSnapshot& metrics, rpc::InstanceStats* out) {
  for (const auto& [name, value] : metrics.counters) {
    (*out->mutable_counters())[net::valid_utf8(name)] = value;
  }
  for (const auto& [name, value] : metrics.gauges) {
    (*out->mutable_gauges())[net::valid_utf8(name)] = value;
  }
  for (const auto& [name, h] : metrics.histograms) {
    rpc::HistogramStats& stats = (*out->mutable_histograms())[net::valid_utf8(name)];
    stats.set_count(h.count);
    stats.set_sum(h.sum);
    stats.set_min(h.min);
    stats.set_max(h.max);
    stats.set_p50(h.p50);
    stats.set_p90(h.p90);
    stats.set_p99(h.p99);
    for (const auto& [index, count] : h.buckets) {
      auto* bucket = stats.add_buckets();
      bucket->set_index(index);
      bucket->set_count(count);
    }
  }
}

JobState to_job_state(rpc::JobInfo::State state) {
  switch (state) {
    case rpc::JobInfo::PENDING:
      return JobState::kPending;
    case rpc::JobInfo::FINISHED:
      return JobState::kFinished;
    case rpc::JobInfo::FAILED:
      return JobState::kFailed;
    case rpc::JobInfo::STOPPED:
      return JobState::kStopped;
    default:
      return JobState::kRunning;
  }
}

}  // namespace

bool is_final(rpc::JobInfo::State state) {
  return state == rpc::JobInfo::FINISHED || state == rpc::JobInfo::FAILED ||
         state == rpc::JobInfo::STOPPED;
}

JobResult to_job_result(const rpc::JobInfo& info) {
  JobResult result;
  result.job_id = info.job_id();
  result.job_name = info.name();
  result.error = info.error();
  result.state = to_job_state(info.state());
  result.restarts = info.restarts();
  result.restart_causes.assign(info.restart_causes().begin(), info.restart_causes().end());
  result.checkpoints_completed = info.checkpoints().completed();
  result.checkpoints_failed = info.checkpoints().failed();
  result.last_checkpoint_id = info.checkpoints().last_id();
  result.last_checkpoint_bytes = info.checkpoints().last_bytes();
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
    stats.operator_id = s.operator_id();
    stats.queue_batches = s.queue_batches();
    stats.queue_peak_batches = s.queue_peak_batches();
    stats.queue_capacity_batches = s.queue_capacity_batches();
    stats.running = s.running();
    stats.user_metrics = user_metrics_of(s);
    result.instances.push_back(std::move(stats));
  }
  std::sort(result.instances.begin(), result.instances.end(),
            [](const InstanceStats& a, const InstanceStats& b) {
              // By name too: jobs stored before operator ids existed have all 0.
              return std::tie(a.operator_id, a.operator_name, a.parallel_index) <
                     std::tie(b.operator_id, b.operator_name, b.parallel_index);
            });
  return result;
}

void sort_instances(google::protobuf::RepeatedPtrField<rpc::InstanceStats>* instances) {
  std::sort(instances->begin(), instances->end(),
            [](const rpc::InstanceStats& a, const rpc::InstanceStats& b) {
              return std::make_tuple(a.operator_id(), a.operator_name(), a.parallel_index()) <
                     std::make_tuple(b.operator_id(), b.operator_name(), b.parallel_index());
            });
}

rpc::ProgressReport progress_report(const JobResult& now, const JobResult* before) {
  rpc::ProgressReport report;
  const double seconds = before != nullptr ? now.duration_seconds - before->duration_seconds : 0;
  for (std::size_t i = 0; i < now.instances.size(); ++i) {
    const InstanceStats& s = now.instances[i];
    rpc::InstanceStats* out = report.add_instances();
    to_message(s, out);
    // The same process lists the same instances in the same order each time.
    if (seconds <= 0 || before->instances.size() != now.instances.size()) continue;
    const InstanceStats& b = before->instances[i];
    out->set_records_in_per_second(static_cast<double>(s.records_in - b.records_in) / seconds);
    out->set_records_out_per_second(static_cast<double>(s.records_out - b.records_out) / seconds);
    out->set_backpressure(std::clamp((s.blocked_seconds - b.blocked_seconds) / seconds, 0.0, 1.0));
    out->set_busy(std::clamp((s.busy_seconds - b.busy_seconds) / seconds, 0.0, 1.0));
  }
  return report;
}

void to_message(const InstanceStats& s, rpc::InstanceStats* out) {
  out->set_operator_name(net::valid_utf8(s.operator_name));
  out->set_parallel_index(s.parallel_index);
  out->set_parallelism(s.parallelism);
  out->set_node_id(s.node_id);
  out->set_process_id(s.process_id);
  out->set_records_in(s.records_in);
  out->set_records_out(s.records_out);
  out->set_busy_seconds(s.busy_seconds);
  out->set_blocked_seconds(s.blocked_seconds);
  out->set_errors(s.errors);
  out->set_operator_id(s.operator_id);
  out->set_queue_batches(s.queue_batches);
  out->set_queue_peak_batches(s.queue_peak_batches);
  out->set_queue_capacity_batches(s.queue_capacity_batches);
  out->set_running(s.running);
  to_message(s.user_metrics, out);
}

}  // namespace sage::cluster
