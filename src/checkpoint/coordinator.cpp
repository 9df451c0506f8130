#include "checkpoint/coordinator.hpp"

#include <spdlog/spdlog.h>

namespace sage::checkpoint {
namespace {

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

CoordinatorSettings CoordinatorSettings::from(const ExecutionConfig& config) {
  return CoordinatorSettings{config.checkpoint_interval, config.min_pause_between_checkpoints,
                             config.checkpoint_timeout, config.tolerable_checkpoint_failures,
                             config.retained_checkpoints};
}

CheckpointCoordinator::CheckpointCoordinator(CoordinatorSettings settings, std::string job_id,
                                             std::string fingerprint, std::vector<TaskKey> tasks,
                                             DirectoryStorage& storage, CoordinatorActions& actions,
                                             std::uint64_t next_id, Clock::time_point now)
    : settings_(settings),
      job_id_(std::move(job_id)),
      fingerprint_(std::move(fingerprint)),
      tasks_(std::move(tasks)),
      storage_(storage),
      actions_(actions),
      next_id_(next_id),
      last_ended_(now) {}

Clock::time_point CheckpointCoordinator::next_poll() const {
  if (pending_) return pending_->started + settings_.timeout;
  return last_ended_ + std::max(settings_.interval, settings_.min_pause);
}

void CheckpointCoordinator::poll(Clock::time_point now) {
  if (pending_) {
    if (now - pending_->started >= settings_.timeout) {
      fail_pending("it did not complete within checkpoint_timeout (" +
                       std::to_string(settings_.timeout.count()) + " ms)",
                   now);
    }
    return;
  }
  if (!finished_.empty() || final_complete_) return;
  if (now >= next_poll()) start(now, false);
}

void CheckpointCoordinator::start(Clock::time_point now, bool final) {
  Pending pending;
  pending.id = next_id_++;
  pending.final = final;
  pending.started = now;
  pending.triggered_at_ms = wall_ms();
  pending.waiting.insert(tasks_.begin(), tasks_.end());
  pending_ = std::move(pending);
  if (final) {
    actions_.trigger_final(pending_->id);
  } else {
    actions_.trigger(pending_->id);
  }
}

void CheckpointCoordinator::acknowledge(std::uint64_t id, const TaskKey& task, std::uint64_t bytes,
                                        std::int64_t alignment_ns, Clock::time_point now) {
  if (!pending_ || pending_->id != id || pending_->waiting.erase(task) == 0) return;
  pending_->bytes += bytes;
  pending_->alignment_ns = std::max(pending_->alignment_ns, alignment_ns);
  if (pending_->waiting.empty()) complete_pending(now);
}

void CheckpointCoordinator::decline(std::uint64_t id, const TaskKey& task,
                                    const std::string& reason, Clock::time_point now) {
  if (!pending_ || pending_->id != id || !pending_->waiting.contains(task)) return;
  fail_pending("task " + std::to_string(task.chain) + "/" + std::to_string(task.instance) +
                   " declined it: " + reason,
               now);
}

void CheckpointCoordinator::task_finished(const TaskKey& task, Clock::time_point now) {
  finished_.insert(task);
  // A regular checkpoint needs barriers that an ended task no longer passes.
  if (pending_ && !pending_->final) {
    const std::uint64_t id = pending_->id;
    pending_.reset();
    last_ended_ = now;
    actions_.abort(id);
  }
  if (finished_.size() == tasks_.size() && !pending_ && !final_complete_) start(now, true);
}

void CheckpointCoordinator::fail_pending(const std::string& why, Clock::time_point now) {
  const std::uint64_t id = pending_->id;
  const bool final = pending_->final;
  pending_.reset();
  last_ended_ = now;
  ++stats_.failed;
  stats_.last_failure = "checkpoint " + std::to_string(id) + " failed: " + why;
  spdlog::warn("job {}: {}", job_id_, stats_.last_failure);
  actions_.abort(id);
  storage_.discard(id);
  ++failures_in_a_row_;
  if (final ||
      (settings_.tolerable_failures >= 0 && failures_in_a_row_ > settings_.tolerable_failures)) {
    actions_.fail(final ? "the final checkpoint, which commits the job's output, failed: " + why
                        : std::to_string(failures_in_a_row_) +
                              " checkpoints failed in a row, more than "
                              "tolerable_checkpoint_failures (" +
                              std::to_string(settings_.tolerable_failures) +
                              "); the last: " + stats_.last_failure);
  }
}

void CheckpointCoordinator::complete_pending(Clock::time_point now) {
  CheckpointMetadata metadata;
  metadata.id = pending_->id;
  metadata.job_id = job_id_;
  metadata.fingerprint = fingerprint_;
  metadata.triggered_at_ms = pending_->triggered_at_ms;
  metadata.completed_at_ms = wall_ms();
  metadata.bytes = pending_->bytes;
  metadata.alignment_ns = pending_->alignment_ns;
  metadata.final = pending_->final;
  metadata.tasks = tasks_;
  try {
    storage_.write_metadata(metadata);
  } catch (const Error& e) {
    fail_pending(std::string("its metadata could not be written: ") + e.what(), now);
    return;
  }
  pending_.reset();
  last_ended_ = now;
  failures_in_a_row_ = 0;
  ++stats_.completed;
  stats_.last = metadata;
  if (metadata.final) final_complete_ = true;
  actions_.complete(metadata.id);
  storage_.prune(settings_.retained, next_id_);
}

}  // namespace sage::checkpoint
