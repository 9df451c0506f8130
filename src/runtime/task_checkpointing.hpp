// What a task needs from its process to take part in checkpoints: where its
// snapshots go (stored in the background, then acknowledged to the
// coordinator), how it declines one, that it has ended, and the snapshot it
// restores when the job restarts from a checkpoint. ProcessJob implements it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "checkpoint/storage.hpp"
#include "sage/options.hpp"

namespace sage::runtime {

class TaskCheckpointing {
 public:
  virtual ~TaskCheckpointing() = default;
  virtual CheckpointMode mode() const = 0;
  // Batches an aligning task may hold back before it declines.
  virtual std::size_t alignment_buffer_batches() const = 0;
  // The snapshot of checkpoint `id` of the task `task` (named `task_name`),
  // encoded (checkpoint/task_snapshot.hpp).
  virtual void store(std::uint64_t id, const checkpoint::TaskKey& task,
                     const std::string& task_name, std::string bytes,
                     std::int64_t alignment_ns) = 0;
  // The bytes of the task's last stored snapshot, for encoding its next one
  // in the same memory; empty when there are none (yet).
  virtual std::string spare_buffer(const checkpoint::TaskKey& /*task*/) { return {}; }
  virtual void decline(std::uint64_t id, const checkpoint::TaskKey& task,
                       const std::string& reason) = 0;
  // The task has ended its input and finished its operators; it now waits
  // for the final checkpoint.
  virtual void finished(const checkpoint::TaskKey& task) = 0;
  // The snapshot to restore, when the job restarts from a checkpoint.
  // Throws sage::Error when it cannot be read.
  virtual std::optional<std::string> restore_bytes(const checkpoint::TaskKey& task) = 0;
};

}  // namespace sage::runtime
