// Where checkpoints are kept: every task's snapshot of a checkpoint, then the
// checkpoint's metadata, written last, which makes it complete. A checkpoint
// without metadata (its tasks crashed while storing it, or it was aborted)
// does not exist for a restore. Every write is durable before it returns:
// written to a hidden file, fsync'd, renamed into place, directory fsync'd.
//
// Layout under a job's root (docs/fault-tolerance.md):
//   chk-<id>/task-<chain>-<instance>   one task's snapshot (TaskSnapshot)
//   chk-<id>/_metadata                 CheckpointMetadata, written last
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sage/serialization.hpp"

namespace sage::checkpoint {

// One task of a job: an instance of a chain of the physical plan.
struct TaskKey {
  int chain = 0;
  int instance = 0;
  SAGE_FIELDS(chain, instance)
  friend bool operator==(const TaskKey&, const TaskKey&) = default;
  friend auto operator<=>(const TaskKey&, const TaskKey&) = default;
};

// What makes a checkpoint complete, and what a restore needs to know.
struct CheckpointMetadata {
  std::uint64_t id = 0;
  std::string job_id;
  std::string fingerprint;  // of the plan: a restore into another plan is refused
  std::int64_t triggered_at_ms = 0;
  std::int64_t completed_at_ms = 0;
  std::uint64_t bytes = 0;        // all task snapshots together
  std::int64_t alignment_ns = 0;  // the longest any task held channels back
  bool final = false;             // taken after every task ended (a bounded job)
  std::vector<TaskKey> tasks;
  SAGE_FIELDS(id, job_id, fingerprint, triggered_at_ms, completed_at_ms, bytes, alignment_ns, final,
              tasks)
};

// Task snapshots are written by the task processes, metadata by the
// coordinator; both may be the same object or two views of one directory.
class CheckpointStorage {
 public:
  virtual ~CheckpointStorage() = default;
  // Throws sage::Error naming the path and the reason when it cannot store.
  virtual void write_task_snapshot(std::uint64_t checkpoint, const TaskKey& task,
                                   std::string_view bytes) = 0;
  // Throws sage::Error when the snapshot is missing or unreadable.
  virtual std::string read_task_snapshot(std::uint64_t checkpoint, const TaskKey& task) const = 0;
};

// A job's checkpoints in a directory: one machine's disk or a mount every
// node shares.
class DirectoryStorage final : public CheckpointStorage {
 public:
  // `root` is the job's directory; created (with parents) on first write.
  explicit DirectoryStorage(std::string root);

  const std::string& root() const { return root_; }
  // Where the snapshot of `task` in checkpoint `checkpoint` is kept.
  std::string task_snapshot_path(std::uint64_t checkpoint, const TaskKey& task) const;
  void write_task_snapshot(std::uint64_t checkpoint, const TaskKey& task,
                           std::string_view bytes) override;
  std::string read_task_snapshot(std::uint64_t checkpoint, const TaskKey& task) const override;

  // Makes checkpoint `metadata.id` complete. Throws sage::Error.
  void write_metadata(const CheckpointMetadata& metadata);
  // The newest complete checkpoint, if any (unreadable metadata is skipped
  // with a warning: that checkpoint is not complete).
  std::optional<CheckpointMetadata> latest_complete() const;
  // Removes checkpoint `id` entirely; errors are logged, not thrown.
  void discard(std::uint64_t id);
  // Removes every checkpoint other than the newest `keep` complete ones,
  // except ids at or above `in_progress_from` (being written now).
  void prune(int keep, std::uint64_t in_progress_from);

 private:
  std::string checkpoint_dir(std::uint64_t id) const;
  std::string root_;
};

// The state directory of this user's sage processes: $SAGE_STATE_DIR, else
// $HOME/.sage, else /tmp/sage-<uid>.
std::string default_state_dir();
// Where a job's checkpoints go by default: checkpoints/ under it.
std::string checkpoint_base(const std::string& configured, const std::string& state_dir);

// A job's checkpoint directory under `base` (ExecutionConfig::checkpoint_directory,
// else <state dir>/checkpoints). Job ids are made by sage ("job-" and hex);
// anything else is refused, so that no id names a path outside `base`.
std::string job_checkpoint_root(const std::string& base, const std::string& job_id);

// A file written durably, in pieces: appended to a hidden temporary file
// beside `path` (its directories are created), which commit() fsyncs and
// renames into place, then fsyncs the directory. Until then `path` is
// untouched; destroyed uncommitted, the temporary file is removed. Every
// method throws sage::Error naming the path and the reason.
class DurableFile {
 public:
  explicit DurableFile(std::string path);
  ~DurableFile();
  DurableFile(const DurableFile&) = delete;
  DurableFile& operator=(const DurableFile&) = delete;

  void append(std::string_view bytes);
  void commit();

 private:
  std::string path_;
  std::string temporary_;
  int fd_ = -1;  // -1 once committed
};

// Writes `bytes` to `path` durably (a DurableFile written at once).
void write_file_durably(const std::string& path, std::string_view bytes);

}  // namespace sage::checkpoint
