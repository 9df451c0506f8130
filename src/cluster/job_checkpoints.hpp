// The checkpoints of one run of a job on the head: its coordinator
// (checkpoint/coordinator.hpp), the job's checkpoint directory, and the
// commands waiting for each task process's stream (ClusterService.
// Checkpoints). The job table owns one per run of a job with checkpoints;
// like it, it is used under the head's mutex.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/coordinator.hpp"
#include "checkpoint/storage.hpp"
#include "sage.pb.h"

namespace sage::cluster {

class JobCheckpoints final : private checkpoint::CoordinatorActions {
 public:
  // A run (`attempt`) of `job_id` with `processes` task processes whose
  // tasks are `tasks`; checkpoints go in `root`, ids start at `next_id`.
  JobCheckpoints(const rpc::CheckpointSettings& settings, const std::string& job_id,
                 const std::string& fingerprint, int attempt, std::string root,
                 std::vector<checkpoint::TaskKey> tasks, int processes, std::uint64_t next_id);

  int attempt() const { return attempt_; }
  const std::string& root() const { return storage_.root(); }

  // What a task process reports on its stream.
  void report(const rpc::CheckpointReport& report, checkpoint::Clock::time_point now);
  // Starts a checkpoint when one is due, fails one past its timeout.
  void poll(checkpoint::Clock::time_point now) { coordinator_.poll(now); }
  checkpoint::Clock::time_point next_poll() const { return coordinator_.next_poll(); }
  // The commands for process `index` not yet sent, oldest first.
  std::vector<rpc::CheckpointCommand> take_commands(int index);

  // Why the job must fail (too many failed checkpoints), once.
  std::optional<std::string> take_failure();
  bool final_complete() const { return coordinator_.final_complete(); }
  std::uint64_t next_id() const { return coordinator_.next_id(); }
  // The figures `sage job status` shows.
  rpc::CheckpointSummary summary() const;

 private:
  void trigger(std::uint64_t id) override { send(rpc::CheckpointCommand::TRIGGER, id); }
  void trigger_final(std::uint64_t id) override { send(rpc::CheckpointCommand::FINAL, id); }
  void complete(std::uint64_t id) override { send(rpc::CheckpointCommand::COMPLETE, id); }
  void abort(std::uint64_t id) override { send(rpc::CheckpointCommand::ABORT, id); }
  void fail(const std::string& why) override {
    if (!failure_) failure_ = why;
  }
  void send(rpc::CheckpointCommand::Kind kind, std::uint64_t id);

  const int attempt_;
  checkpoint::DirectoryStorage storage_;
  checkpoint::CheckpointCoordinator coordinator_;
  std::vector<std::deque<rpc::CheckpointCommand>> outboxes_;  // per process
  std::optional<std::string> failure_;
  bool failure_taken_ = false;
};

// The checkpoint a job restarts from: the newest complete one of this job
// in `root` (nullopt: none, the job starts afresh).
std::optional<checkpoint::CheckpointMetadata> latest_checkpoint(const std::string& root);

}  // namespace sage::cluster
