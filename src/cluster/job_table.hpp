// The head's jobs: their records and task processes, and their lifecycle
// (submit -> schedule -> prepare -> start -> report -> settle), kept in the
// job database as they change; ended jobs beyond the history are forgotten.
// It places jobs on, and sends commands through, the NodeRegistry. Not
// thread-safe: the head calls it under its one mutex (HeadState). Methods
// that write the database log its refusals, except submit(), which throws.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cluster/job_store.hpp"
#include "cluster/node_registry.hpp"
#include "cluster/program_store.hpp"
#include "sage.pb.h"

namespace sage::cluster {

class JobTable {
 public:
  // Loads the jobs recorded in `store`: a job that was running when the head
  // went down cannot be resumed and is FAILED. Throws sage::Error when the
  // database refuses. `token` goes to the task processes; `job_history` is
  // the number of ended jobs kept.
  JobTable(JobStore& store, ProgramStore& programs, NodeRegistry& nodes, std::string token,
           int job_history, std::string checkpoint_base);
  ~JobTable();
  JobTable(const JobTable&) = delete;
  JobTable& operator=(const JobTable&) = delete;

  // A new PENDING job, recorded, then placed with the other pending jobs if
  // it fits now. Returns its id. Throws sage::Error when the database refuses
  // the record: there is no job then.
  std::string submit(const rpc::SubmitRequest& request);
  // Places the pending jobs that fit, oldest first, and tells their nodes to
  // prepare their task processes; the others say what they wait for.
  void schedule_pending();

  bool contains(const std::string& job_id) const;
  // The job as clients see it (with live statistics), or nullopt.
  std::optional<rpc::JobInfo> info(const std::string& job_id) const;
  // Every job with live statistics, newest first, but those that ended at or
  // before `ended_after_ms` (by default, none is left out).
  std::vector<rpc::JobInfo> list(std::int64_t ended_after_ms = 0) const;
  // Every job newest first, without per-instance statistics and restart
  // causes (Job::summary): cheap for a job of thousands of instances.
  std::vector<rpc::JobInfo> summaries() const;
  // The jobs not yet ended, as recorded (without live statistics).
  std::vector<rpc::JobInfo> unfinished() const;

  // A task process's worker reserved its data-plane port (or says why it
  // could not); once all have, the job's processes start. Returns a problem
  // when the report comes from a node the process does not run on.
  std::optional<std::string> prepared(const rpc::PreparedReport& report);
  void progress(const rpc::ProgressReport& report);
  // A task process ended: its statistics are kept, a failure fails the job
  // (a consequence waits for its cause, see fail_overdue()), and a job all
  // of whose processes ended settles.
  void exited(const rpc::ExitReport& report);
  // The user stops the job: its processes drain. nullopt for an unknown job.
  std::optional<rpc::JobInfo> stop(const std::string& job_id);
  // Fails the jobs with a task process on the node, which is marked dead.
  void node_died(const std::string& node_id, const std::string& why);
  // Fails the jobs whose first failure, a consequence, has waited for its
  // cause for kRootCauseGrace.
  void fail_overdue(std::int64_t now_ms);
  // Drives the jobs' checkpoint coordinators, and places the jobs whose
  // restart delay has passed. Returns when it wants to be called again.
  std::chrono::steady_clock::time_point tick(std::int64_t now_ms);

  // Checkpoints on the stream of task process `process_index` of run
  // `attempt` of a job: whether that process exists now (with checkpoints),
  // a report from it, and the commands waiting for it (nullopt once that
  // run is over: the stream ends).
  bool has_checkpoint_stream(const std::string& job_id, int attempt, int process_index) const;
  void checkpoint_report(const std::string& job_id, int attempt,
                         const rpc::CheckpointReport& report);
  std::optional<std::vector<rpc::CheckpointCommand>> take_checkpoint_commands(
      const std::string& job_id, int attempt, int process_index);

  // Where the head keeps a task's snapshot that a task process stores or
  // fetches over ClusterService (StoreSnapshot, FetchSnapshot): a file of
  // the run's checkpoint directory, or why the request is refused. A run
  // stores only checkpoints it has triggered, and fetches only the one it
  // restores.
  enum class SnapshotUse { kStore, kRestore };
  struct SnapshotLocation {
    std::string path;     // empty when refused
    std::string refusal;  // why, when refused
  };
  SnapshotLocation snapshot_location(const rpc::SnapshotRef& ref, SnapshotUse use) const;

  // Takes the ended jobs beyond the history out of the table, those that
  // ended first, for remove_forgotten(); a job with a task process that has
  // not reported its exit stays.
  std::vector<std::string> take_forgotten();

 private:
  struct Job;
  struct Process;
  Job* find(const std::string& job_id) const;
  std::vector<const Job*> newest_first() const;
  Process* find_process(const std::string& job_id, int attempt, int index);
  std::optional<std::string> place(Job& job);
  void start_processes(Job& job);
  void send_stop(const Job& job);
  // Fails the job, or restarts it from its last checkpoint when it has
  // checkpoints and restart attempts left (and `may_restart`).
  void fail(Job& job, std::string error, bool may_restart = true);
  void begin_restart(Job& job, const std::string& cause);
  void end_restart(Job& job);
  // Removes the job's checkpoint directory (its runs are over for good).
  void discard_checkpoints(Job& job);
  Job* find_run(const std::string& job_id, int attempt) const;
  void settle_if_ended(Job& job);
  void finish(Job& job, rpc::JobInfo::State state, const std::string& error);
  void release(Job& job);
  void record_process_failure(const Job& job, int process_index, const std::string& error);
  void persist(const Job& job);
  void save(const Job& job);
  void load();

  // Constant after construction.
  JobStore& store_;
  ProgramStore& programs_;
  NodeRegistry& nodes_;
  const std::string token_;
  const std::size_t job_history_;
  const std::string checkpoint_base_;  // checkpoints/ in the head's state directory

  std::map<std::string, std::unique_ptr<Job>> jobs_;
};

// Deletes the forgotten jobs' records and output from the database, which
// is thread-safe: called without the head's mutex. Logs a refusal (they are
// forgotten again when the head restarts).
void remove_forgotten(JobStore& store, const std::vector<std::string>& job_ids, int job_history);

}  // namespace sage::cluster
