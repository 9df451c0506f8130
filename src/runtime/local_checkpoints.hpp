// The checkpoints of a job that runs in this process (LocalEnvironment): a
// coordinator driven by a thread of its own, with the job's checkpoints in a
// directory that is removed when the job ends (a local job cannot be resumed;
// its checkpoints exist for its exactly-once sinks' commits).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "checkpoint/coordinator.hpp"
#include "checkpoint/storage.hpp"
#include "runtime/process_job.hpp"

namespace sage::runtime {

class LocalCheckpoints final : public CheckpointLink, private checkpoint::CoordinatorActions {
 public:
  // Links `job` (not started yet) to a coordinator of its own; its
  // checkpoints go under `base` (see checkpoint::job_checkpoint_root).
  LocalCheckpoints(ProcessJob& job, const ExecutionConfig& config, const std::string& base);
  ~LocalCheckpoints() override;  // stops the coordinator and removes the job's checkpoints

  // Starts the coordinator's thread (after the job started).
  void start();
  // The coordinator's figures for the job's result.
  checkpoint::CheckpointStats stats() const;

  checkpoint::CheckpointStorage& storage() override { return storage_; }
  void acknowledged(std::uint64_t id, const checkpoint::TaskKey& task, std::uint64_t bytes,
                    std::int64_t alignment_ns) override;
  void declined(std::uint64_t id, const checkpoint::TaskKey& task,
                const std::string& reason) override;
  void finished(const checkpoint::TaskKey& task) override;

 private:
  void trigger(std::uint64_t id) override { job_.trigger_checkpoint(id); }
  void trigger_final(std::uint64_t id) override { job_.trigger_final_checkpoint(id); }
  void complete(std::uint64_t id) override { job_.checkpoint_complete(id); }
  void abort(std::uint64_t id) override { job_.abort_checkpoint(id); }
  void fail(const std::string& why) override { job_.fail(why, FailureKind::kCause); }
  void run();

  ProcessJob& job_;
  checkpoint::DirectoryStorage storage_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::unique_ptr<checkpoint::CheckpointCoordinator> coordinator_;  // guarded by mutex_
  std::thread thread_;
};

// The tasks of a plan, chains in order, then instances: the order of
// TaskAssignment::process_of_task and of a checkpoint's tasks.
std::vector<checkpoint::TaskKey> tasks_of(const graph::PhysicalPlan& plan);

}  // namespace sage::runtime
