// Per-operator options (name, parallelism, resources) and per-job execution
// settings. Every default lives here, next to its definition.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sage {

// What one parallel instance of an operator needs from the node it runs on.
// The cluster scheduler places an instance only where these are free; a local
// run validates them and records them in the plan.
struct Resources {
  double num_cpus = 1.0;    // CPU slots; fractional values share a core
  std::string memory = "";  // e.g. "512MB", "8GB"; empty = no limit
  int num_gpus = 0;         // whole GPUs, handed out as CUDA_VISIBLE_DEVICES

  // Memory in bytes; 0 when unlimited. Throws InvalidPlanError for a string
  // that parse_memory_amount refuses, such as "8 gigs".
  std::uint64_t memory_bytes() const;
  // Throws InvalidPlanError naming `operator_name` for negative or malformed values.
  void validate(const std::string& operator_name) const;

  friend bool operator==(const Resources&, const Resources&) = default;
};

// An amount of memory in bytes: a number with an optional unit, B, K/KB/KiB,
// M/MB/MiB, G/GB/GiB or T/TB/TiB (all powers of 1024), e.g. "512MB". Throws
// InvalidPlanError naming `field` for text that is not one, and for amounts
// of less than a byte, of a fraction of a byte, or of 16 EiB or more.
std::uint64_t parse_memory_amount(std::string_view text, std::string_view field);

// Options accepted by every transformation, as a trailing argument:
//   stream.map(f, {.name = "DistMapper", .parallelism = 4});
struct Options {
  std::string name;                    // shown in metrics, logs and errors; default: the kind
  std::optional<int> parallelism;      // instances of this operator; default: 1 (sources) or
                                       // the upstream operator's parallelism
  std::optional<Resources> resources;  // per instance; default: Resources{}
};

// The most task processes a job may ask each node for.
inline constexpr int kMaxTaskProcessesPerNode = 64;

// How a checkpoint treats an operator with several input channels.
enum class CheckpointMode { kExactlyOnce, kAtLeastOnce };

// How the operating system schedules a job's task threads (Linux).
// kThroughput: the SCHED_BATCH policy. A task thread that wakes (a batch
// arrived, its queue has room again) does not preempt a running one but waits
// for the end of its time slice, so where busy tasks outnumber cores they
// switch threads far less often, at the price of up to a few milliseconds of
// extra latency on such an overloaded machine; with a core free, nothing
// changes. kNormal: the system's default policy, for latency-critical jobs on
// machines with more busy tasks than cores.
enum class TaskScheduling { kThroughput, kNormal };

// Engine settings for one job. The defaults suit small and large records alike;
// docs/performance.md explains when to change them.
struct ExecutionConfig {
  // Records per batch handed between operators that are not chained. Each
  // batch costs a few microseconds of hand-over (queue, wake-ups, thread
  // switches), so small records want large batches: 4096 numbers are 32 KiB,
  // the size of Flink's network buffers. A batch too large for one frame of
  // the data plane crosses processes in several.
  std::size_t batch_size = 4096;
  // Batches a consumer instance may have queued before its producers block.
  // Bounds memory per instance at about batch_size * channel_capacity records.
  std::size_t channel_capacity = 4;
  // How long a partly filled batch may wait for more records before it is sent.
  std::chrono::microseconds linger = std::chrono::microseconds(500);
  // Key groups of key_by: the unit by which keyed state is placed on instances.
  // It is the largest parallelism a keyed operator can have.
  int max_parallelism = 128;

  // Fault tolerance (docs/fault-tolerance.md). Every checkpoint_interval the
  // sources start a consistent snapshot of every operator's state; 0 = off.
  std::chrono::milliseconds checkpoint_interval{0};
  // Exactly-once aligns the barriers of an operator's input channels;
  // at-least-once does not wait for them (lower latency; after a restart some
  // records may have been counted twice).
  CheckpointMode checkpoint_mode = CheckpointMode::kExactlyOnce;
  // A checkpoint not stored by every task within this time is aborted.
  std::chrono::milliseconds checkpoint_timeout{60'000};
  // The least time from the end of one checkpoint to the start of the next.
  std::chrono::milliseconds min_pause_between_checkpoints{0};
  // Checkpoints in a row that may fail (declined, timed out) before the job
  // does; -1: any number.
  int tolerable_checkpoint_failures = -1;
  // Batches an aligning task may hold back from channels that delivered the
  // barrier; beyond it the task declines the checkpoint rather than stall.
  std::size_t alignment_buffer_batches = 64;
  // Completed checkpoints kept on storage (the newest).
  int retained_checkpoints = 3;
  // Where checkpoints are stored: a directory on this machine or, on a
  // cluster, an absolute path to a mount every node shares, which task
  // processes write directly. Empty: checkpoints/ under the state directory
  // (SAGE_STATE_DIR, or ~/.sage); on a cluster, the head's, where task
  // processes stream their snapshots over gRPC (no shared file system needed).
  std::string checkpoint_directory;
  // After a task process, a worker or a node dies, the job restarts from its
  // last completed checkpoint up to this many times (checkpoints on only),
  // each after restart_delay.
  int restart_attempts = 3;
  std::chrono::milliseconds restart_delay{1'000};

  // On a cluster: how many task processes a node runs for this job at most.
  // Each operator's instances on a node are dealt over that many processes
  // (chains stay whole), so that CPU-bound Python operators, whose threads
  // share one GIL per process, use several cores (docs/cluster.md, "Several
  // task processes per node"). 1: one process per node. LocalEnvironment
  // ignores it.
  int task_processes_per_node = 1;
  // The scheduling policy of task threads; see TaskScheduling.
  TaskScheduling task_scheduling = TaskScheduling::kThroughput;

  // Throws InvalidPlanError for zero sizes, max_parallelism < 1 or negative
  // checkpoint settings.
  void validate() const;
};

}  // namespace sage
