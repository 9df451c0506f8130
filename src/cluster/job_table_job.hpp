// The records JobTable keeps of a job and its task processes; shared by the
// files of the job table (job_table.cpp: the lifecycle; job_recovery.cpp:
// checkpoints and restarts), and by nothing else.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cluster/job_checkpoints.hpp"
#include "cluster/job_info.hpp"
#include "cluster/job_table.hpp"
#include "cluster/scheduler.hpp"

namespace sage::cluster {

struct JobTable::Process {
  std::string node_id;
  std::string data_address;
  std::vector<int> gpus;
  std::uint64_t memory = 0;
  // Prepared: its worker reserved its data-plane port. Started: told to
  // start it, after which its worker reports its exit.
  bool prepared = false, started = false, exited = false;
  // Its instances' statistics and its resident memory from its last progress
  // report, until it exits.
  google::protobuf::RepeatedPtrField<rpc::InstanceStats> live;
  std::uint64_t resident_bytes = 0;
};

struct JobTable::Job {
  rpc::JobInfo info;
  rpc::SubmitRequest request;
  std::vector<Process> processes;
  std::vector<int> process_of_task;
  std::vector<std::vector<int>> gpus_of_task;  // CUDA numbers in the task's process
  std::vector<Hold> holds;
  bool stop_requested = false;
  std::string held_error;  // the first process failure, until it is reported
  std::int64_t held_since_ms = 0;

  // Fault tolerance. A run is one placement of the job: the first, then one
  // per restart. While `restarting`, the run's processes are being ended;
  // then the job waits PENDING until `restart_at_ms` and is placed again,
  // restoring checkpoint `restore_from` (0: none, it starts afresh).
  int attempt = 0;
  bool restarting = false;
  std::int64_t restart_at_ms = 0;
  std::uint64_t restore_from = 0;
  std::uint64_t next_checkpoint_id = 1;
  std::unique_ptr<JobCheckpoints> checkpoints;  // of the current run, with checkpoints on
  rpc::CheckpointSummary earlier_runs;          // checkpoints of the runs before it

  bool checkpointed() const { return request.checkpoints().interval_ms() > 0; }

  bool all_exited() const {
    return std::all_of(processes.begin(), processes.end(),
                       [](const Process& p) { return p.exited; });
  }
  // The job as clients see it: while it runs, the final statistics of its
  // processes that ended and the latest of those still running, and the
  // memory of those that reported.
  rpc::JobInfo with_live_statistics() const {
    rpc::JobInfo live = info;
    for (std::size_t p = 0; p < processes.size(); ++p) {
      const Process& process = processes[p];
      if (process.exited) continue;
      live.mutable_instances()->MergeFrom(process.live);
      if (process.live.empty()) continue;  // no progress report yet
      rpc::ProcessStats* stats = live.add_processes();
      stats->set_process_index(static_cast<int>(p));
      stats->set_node_id(process.node_id);
      stats->set_pid(process.live[0].process_id());
      stats->set_resident_bytes(process.resident_bytes);
      stats->set_memory_limit_bytes(process.memory);
      for (const auto& s : process.live) {
        stats->add_instances(s.operator_name() + "[" + std::to_string(s.parallel_index()) + "/" +
                             std::to_string(s.parallelism()) + "]");
      }
    }
    sort_instances(live.mutable_instances());
    if (has_checkpoint_figures()) *live.mutable_checkpoints() = checkpoint_summary();
    return live;
  }
  // The job without its per-instance statistics and restart causes: what a
  // list of jobs shows.
  rpc::JobInfo summary() const {
    rpc::JobInfo summary;
    summary.set_job_id(info.job_id());
    summary.set_name(info.name());
    summary.set_state(info.state());
    summary.set_error(info.error());
    summary.set_submitted_at_ms(info.submitted_at_ms());
    summary.set_started_at_ms(info.started_at_ms());
    summary.set_finished_at_ms(info.finished_at_ms());
    summary.set_pending_reason(info.pending_reason());
    *summary.mutable_nodes() = info.nodes();
    summary.set_restarts(info.restarts());
    summary.set_last_progress_ms(info.last_progress_ms());
    *summary.mutable_chains() = info.chains();
    return summary;
  }
  bool has_checkpoint_figures() const {
    return checkpoints != nullptr || earlier_runs.ByteSizeLong() > 0;
  }
  // This run's checkpoints on top of the earlier runs'.
  rpc::CheckpointSummary checkpoint_summary() const {
    rpc::CheckpointSummary summary = earlier_runs;
    if (!checkpoints) return summary;
    const rpc::CheckpointSummary now = checkpoints->summary();
    summary.set_completed(summary.completed() + now.completed());
    summary.set_failed(summary.failed() + now.failed());
    if (!now.last_failure().empty()) summary.set_last_failure(now.last_failure());
    if (now.last_id() != 0) {
      summary.set_last_id(now.last_id());
      summary.set_last_completed_at_ms(now.last_completed_at_ms());
      summary.set_last_duration_ms(now.last_duration_ms());
      summary.set_last_bytes(now.last_bytes());
      summary.set_last_alignment_ms(now.last_alignment_ms());
    }
    return summary;
  }
  // Processes not yet started (their job failed or was stopped while it was
  // being prepared) will never report an exit: they end here.
  void end_unstarted_processes() {
    for (Process& p : processes) {
      if (!p.started) p.exited = true;
    }
  }
};

}  // namespace sage::cluster
