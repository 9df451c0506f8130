// A task process: one process of a distributed job, running the tasks the
// scheduler assigned to it. The user's program rebuilt the dataflow (the
// program is the job); this checks that it planned to the same fingerprint,
// connects to the peer processes and runs its share until every one of its
// tasks has ended.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/socket.hpp"
#include "net/tls.hpp"
#include "sage/detail/logical_graph.hpp"
#include "sage/job_result.hpp"
#include "sage/serialization.hpp"

namespace sage::cluster {

// What a task process is told when it starts.
struct TaskAssignment {
  std::string job_id;
  std::string token;        // the cluster token; peers must present it
  std::string fingerprint;  // of the plan the job was submitted with
  int process_index = 0;
  std::vector<std::string> data_addresses;  // every process's data-plane host:port
  std::vector<int> process_of_task;         // per task, chains in order, then instances
  std::string node_id;
  // Per task, the GPUs it holds as CUDA numbers them in its process (positions
  // in the process's CUDA_VISIBLE_DEVICES); empty for most.
  std::vector<std::vector<int>> gpus_of_task;
  // Which run of the job this is: 0, then one more after each restart. Part
  // of the data plane's hello, so that no process of an earlier run can
  // reach one of this run.
  int attempt = 0;
  // Checkpoints: whether the job takes them; the job's checkpoint directory
  // on a mount every node shares, when it names one (empty: snapshots go to
  // the head, see head_snapshot_storage.hpp); the checkpoint to restore (0:
  // start afresh).
  bool checkpoints = false;
  std::string checkpoint_root;
  std::uint64_t restore_checkpoint = 0;
  SAGE_FIELDS(job_id, token, fingerprint, process_index, data_addresses, process_of_task, node_id,
              gpus_of_task, attempt, checkpoints, checkpoint_root, restore_checkpoint)

  // As text safe for an environment variable (hex), and back (throws sage::Error).
  std::string encode() const;
  static TaskAssignment decode(std::string_view text);
};

// What the code that started a task process can do while its tasks run;
// any thread may call them, once or more, until they are withdrawn.
struct RunningTasks {
  // Sources end, records in flight are processed, and the result says
  // JobState::kStopped.
  std::function<void()> request_stop;
  // The statistics of this process's instances so far.
  std::function<JobResult()> statistics;
};

// This process's share of the job's outcome. `consequence`: it failed only
// because another process did (a peer's connection broke), so its error is
// not the job's cause.
struct TaskProcessResult : JobResult {
  bool consequence = false;
};

// Runs this process's share and returns the statistics of its instances.
// `listener` is this process's data-plane socket, already listening; with
// `tls` enabled its connections in and out are encrypted; `on_running` is
// called with the RunningTasks once the tasks have started, and with null
// once they have all ended, before anything is torn down: from then on the
// functions must not be called.
// Throws InvalidPlanError if the graph plans to another fingerprint, with
// the advice below.
TaskProcessResult run_task_process(std::shared_ptr<const detail::LogicalGraph> graph,
                                   const ExecutionConfig& config, const TaskAssignment& assignment,
                                   net::Socket listener, const net::TlsFiles& tls = {},
                                   const std::function<void(const RunningTasks*)>& on_running = {});

// What the error for a dataflow that a task process builds differently from
// the one submitted advises; a language binding (Python) replaces the C++
// advice with its own before any job runs.
void set_plan_mismatch_advice(std::string advice);

// The entry point of a task process, from RemoteEnvironment::submit in the
// user's program rebuilt by a worker (the assignment, data socket, result
// pipe and lease in kAssignmentVariable and the other variables of
// cluster_config.hpp): runs this process's share, taking SIGTERM as a request
// to stop and sending progress reports meanwhile, tells the worker how it went
// through the result pipe, and ends the process.
[[noreturn]] void run_as_task_process(const std::shared_ptr<detail::LogicalGraph>& graph,
                                      const ExecutionConfig& config);

// The result pipe from a task process to its worker carries frames: a
// progress report (rpc::ProgressReport) about once a second while the tasks
// run, a warning line for the worker's log now and then (connections the data
// plane turned away: the job's output is the user's), then the exit report
// (rpc::ExitReport). A frame is its kind, the payload's length (4 bytes,
// little-endian) and the payload.
enum class ResultFrameKind : char { kProgress = 'P', kWarning = 'W', kExit = 'X' };
constexpr auto kProgressInterval = std::chrono::seconds(1);

// Writes one frame; false if the worker is gone. Any thread may call it:
// frames never interleave.
bool write_result_frame(int fd, ResultFrameKind kind, const std::string& payload);

// Takes the first whole frame off `buffer`; false while there is none.
// Throws sage::Error for bytes that are not a frame.
bool take_result_frame(std::string& buffer, ResultFrameKind* kind, std::string* payload);

}  // namespace sage::cluster
