// The job table's fault tolerance: a failed run of a job with checkpoints
// is ended and the job placed again from its last complete checkpoint, and
// the checkpoint streams of its task processes reach the run's coordinator.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>

#include "cluster/cluster_config.hpp"
#include "cluster/job_table.hpp"
#include "cluster/job_table_job.hpp"
#include "cluster/request_validation.hpp"
#include "sage/error.hpp"

namespace sage::cluster {

// A run failed: its processes are ended (killed), and once all have, the
// job runs again from its last completed checkpoint (end_restart).
void JobTable::begin_restart(Job& job, const std::string& cause) {
  job.restarting = true;
  job.info.set_restarts(job.info.restarts() + 1);
  job.info.add_restart_causes(cut_text(cause));
  const std::string line =
      fmt::format("[sage] restarting (restart {} of at most {}) after: {}", job.info.restarts(),
                  job.request.checkpoints().restart_attempts(), cause);
  spdlog::warn("job {}: {}", job.info.job_id(), line.substr(7));
  try {
    store_.append_logs(job.info.job_id(), {line});
  } catch (const Error& e) {
    spdlog::error("job {}: cannot add to its output: {}", job.info.job_id(), e.what());
  }
  send_stop(job);
  job.end_unstarted_processes();
  save(job);
  settle_if_ended(job);
}

void JobTable::end_restart(Job& job) {
  job.restarting = false;
  job.restore_from = 0;
  if (job.checkpoints) {
    job.next_checkpoint_id = job.checkpoints->next_id();
    job.earlier_runs = job.checkpoint_summary();
    if (const auto latest = latest_checkpoint(job.checkpoints->root())) {
      job.restore_from = latest->id;
    }
    job.checkpoints.reset();
  }
  release(job);
  job.processes.clear();
  job.process_of_task.clear();
  job.gpus_of_task.clear();
  ++job.attempt;
  const auto delay = job.request.checkpoints().restart_delay_ms();
  job.restart_at_ms = now_ms() + delay;
  job.info.set_state(rpc::JobInfo::PENDING);
  job.info.set_pending_reason(
      fmt::format("restarting in {} ms from {}", delay,
                  job.restore_from == 0 ? std::string("the beginning (no checkpoint completed)")
                                        : "checkpoint " + std::to_string(job.restore_from)));
  save(job);
  spdlog::info("job {}: {}", job.info.job_id(), job.info.pending_reason());
}

std::chrono::steady_clock::time_point JobTable::tick(std::int64_t now) {
  auto next = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  bool restart_due = false;
  for (auto& [id, job] : jobs_) {
    if (job->info.state() == rpc::JobInfo::PENDING && job->restart_at_ms != 0 &&
        job->restart_at_ms <= now) {
      restart_due = true;
    }
    if (!job->checkpoints || is_final(job->info.state()) || job->restarting) continue;
    job->checkpoints->poll(checkpoint::Clock::now());
    if (auto failure = job->checkpoints->take_failure()) {
      fail(*job, *failure, /*may_restart=*/false);
      settle_if_ended(*job);
      continue;
    }
    next = std::min(next, job->checkpoints->next_poll());
  }
  if (restart_due) schedule_pending();
  return next;
}

void JobTable::discard_checkpoints(Job& job) {
  if (!job.checkpoints) return;
  job.earlier_runs = job.checkpoint_summary();  // the figures stay
  std::error_code ec;
  std::filesystem::remove_all(job.checkpoints->root(), ec);
  if (ec) {
    spdlog::warn("job {}: cannot remove its checkpoints in {}: {}", job.info.job_id(),
                 job.checkpoints->root(), ec.message());
  }
  job.checkpoints.reset();
}

JobTable::Job* JobTable::find_run(const std::string& job_id, int attempt) const {
  Job* job = find(job_id);
  if (job == nullptr || job->attempt != attempt || !job->checkpoints || job->restarting ||
      is_final(job->info.state())) {
    return nullptr;
  }
  return job;
}

bool JobTable::has_checkpoint_stream(const std::string& job_id, int attempt,
                                     int process_index) const {
  const Job* job = find_run(job_id, attempt);
  return job != nullptr && process_index >= 0 &&
         process_index < static_cast<int>(job->processes.size());
}

void JobTable::checkpoint_report(const std::string& job_id, int attempt,
                                 const rpc::CheckpointReport& report) {
  Job* job = find_run(job_id, attempt);
  if (job == nullptr) return;
  const auto completed = job->checkpoints->summary().completed();
  job->checkpoints->report(report, checkpoint::Clock::now());
  if (job->checkpoints->summary().completed() != completed) save(*job);  // jobs.db has the last
  if (auto failure = job->checkpoints->take_failure()) {
    fail(*job, *failure, /*may_restart=*/false);
    settle_if_ended(*job);
  }
}

std::optional<std::vector<rpc::CheckpointCommand>> JobTable::take_checkpoint_commands(
    const std::string& job_id, int attempt, int process_index) {
  Job* job = find_run(job_id, attempt);
  if (job == nullptr) return std::nullopt;
  return job->checkpoints->take_commands(process_index);
}

JobTable::SnapshotLocation JobTable::snapshot_location(const rpc::SnapshotRef& ref,
                                                       SnapshotUse use) const {
  const Job* job = find_run(ref.job_id(), ref.attempt());
  if (job == nullptr) {
    return {{},
            fmt::format("job {} has no run {} with checkpoints now (ended, restarted, or never)",
                        ref.job_id(), ref.attempt())};
  }
  if (ref.chain() >= job->request.chains_size() ||
      ref.instance() >= job->request.chains(ref.chain()).parallelism()) {
    return {{}, fmt::format("job {} has no task {}.{}", ref.job_id(), ref.chain(), ref.instance())};
  }
  if (use == SnapshotUse::kStore && (ref.checkpoint() < job->next_checkpoint_id ||
                                     ref.checkpoint() >= job->checkpoints->next_id())) {
    return {{},
            fmt::format("run {} of job {} has not triggered checkpoint {}", ref.attempt(),
                        ref.job_id(), ref.checkpoint())};
  }
  if (use == SnapshotUse::kRestore && ref.checkpoint() != job->restore_from) {
    return {{},
            fmt::format("run {} of job {} restores checkpoint {}, not {}", ref.attempt(),
                        ref.job_id(), job->restore_from, ref.checkpoint())};
  }
  const checkpoint::DirectoryStorage storage(job->checkpoints->root());
  return {storage.task_snapshot_path(ref.checkpoint(), {ref.chain(), ref.instance()}), {}};
}

}  // namespace sage::cluster
