// The checkpoint coordinator of one job: when to start a checkpoint, which
// tasks still owe their snapshot, when a checkpoint is complete (every task
// stored its snapshot: then the metadata is written, last) or failed
// (declined by a task, or past its timeout), and the final checkpoint of a
// bounded job once every task has ended. One checkpoint is in flight at a
// time. A LocalEnvironment runs one in its process; on a cluster the head
// runs one per job (src/cluster/checkpoints.*).
//
// Not thread-safe: its owner serializes the calls. Actions are called
// synchronously from them and must not call back.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/storage.hpp"
#include "sage/options.hpp"

namespace sage::checkpoint {

using Clock = std::chrono::steady_clock;

struct CoordinatorSettings {
  std::chrono::milliseconds interval{0};
  std::chrono::milliseconds min_pause{0};
  std::chrono::milliseconds timeout{60'000};
  int tolerable_failures = -1;  // -1: any number
  int retained = 3;
  static CoordinatorSettings from(const ExecutionConfig& config);
};

// What the coordinator makes happen in the job's tasks.
class CoordinatorActions {
 public:
  virtual ~CoordinatorActions() = default;
  // The source tasks take their snapshot and send barrier `id` downstream.
  virtual void trigger(std::uint64_t id) = 0;
  // Every task (all have ended) takes its final snapshot.
  virtual void trigger_final(std::uint64_t id) = 0;
  // Every task stored checkpoint `id`: commit what it covers.
  virtual void complete(std::uint64_t id) = 0;
  // Checkpoint `id` will not complete: tasks stop aligning for it.
  virtual void abort(std::uint64_t id) = 0;
  // More checkpoints failed in a row than the job tolerates.
  virtual void fail(const std::string& why) = 0;
};

// What `sage job status` and JobResult show of a job's checkpoints.
struct CheckpointStats {
  std::uint64_t completed = 0;             // checkpoints completed
  std::uint64_t failed = 0;                // declined or timed out
  std::optional<CheckpointMetadata> last;  // the last completed
  std::string last_failure;                // why the last failed one did
};

class CheckpointCoordinator {
 public:
  // `next_id` is the first id to use: 1, or one past the checkpoint the job
  // restarted from (ids only grow, so a late message of the previous run
  // never passes for one of this run).
  CheckpointCoordinator(CoordinatorSettings settings, std::string job_id, std::string fingerprint,
                        std::vector<TaskKey> tasks, DirectoryStorage& storage,
                        CoordinatorActions& actions, std::uint64_t next_id, Clock::time_point now);

  // Starts a checkpoint when one is due; fails one past its timeout.
  void poll(Clock::time_point now);
  // A task stored its snapshot of checkpoint `id` (`bytes` long, after
  // holding channels back for `alignment_ns`).
  void acknowledge(std::uint64_t id, const TaskKey& task, std::uint64_t bytes,
                   std::int64_t alignment_ns, Clock::time_point now);
  // A task could not take its snapshot of `id`.
  void decline(std::uint64_t id, const TaskKey& task, const std::string& reason,
               Clock::time_point now);
  // A task has ended its input: no new checkpoint starts; once every task
  // has, the final checkpoint does.
  void task_finished(const TaskKey& task, Clock::time_point now);

  // The final checkpoint completed: the job's output is committed.
  bool final_complete() const { return final_complete_; }
  // The id the next checkpoint would take: a restarted run starts there.
  std::uint64_t next_id() const { return next_id_; }
  const CheckpointStats& stats() const { return stats_; }
  // When poll() has something to do next (a checkpoint due or timing out).
  Clock::time_point next_poll() const;

 private:
  struct Pending {
    std::uint64_t id = 0;
    bool final = false;
    Clock::time_point started;
    std::int64_t triggered_at_ms = 0;
    std::set<TaskKey> waiting;
    std::uint64_t bytes = 0;
    std::int64_t alignment_ns = 0;
  };
  void start(Clock::time_point now, bool final);
  void fail_pending(const std::string& why, Clock::time_point now);
  void complete_pending(Clock::time_point now);

  const CoordinatorSettings settings_;
  const std::string job_id_;
  const std::string fingerprint_;
  const std::vector<TaskKey> tasks_;
  DirectoryStorage& storage_;
  CoordinatorActions& actions_;
  std::uint64_t next_id_;
  Clock::time_point last_ended_;  // when the last checkpoint ended (or the job started)
  std::optional<Pending> pending_;
  std::set<TaskKey> finished_;
  int failures_in_a_row_ = 0;
  bool final_complete_ = false;
  CheckpointStats stats_;
};

}  // namespace sage::checkpoint
