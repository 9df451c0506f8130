// The part of a job that runs in this process: each of its tasks on its own
// thread, channels between them as in-memory queues. A local job runs every
// task here; a task process of a distributed job runs its share, and its
// Placement says where records for the other tasks go. start() once, wait()
// from the owning thread, request_stop() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/storage.hpp"
#include "graph/physical_plan.hpp"
#include "runtime/input_queue.hpp"
#include "runtime/job_control.hpp"
#include "runtime/task.hpp"
#include "sage/job_result.hpp"

namespace sage::runtime {

// Which tasks run in this process, and where records for the others go.
struct Placement {
  // True for the tasks this process runs; unset means all of them.
  std::function<bool(int chain, int instance)> is_local;
  // Where records for a task of another process go. Its push() throws
  // sage::Error when the connection to that process fails: the job then fails
  // with that as a consequence (the other process's failure is the cause).
  std::function<detail::MessageSink&(int chain, int instance)> remote_sink;
  // The process's node (host name by default), shown in statistics and errors.
  std::string node_id;
  // The GPUs (CUDA device numbers in this process) a task holds; unset: none.
  std::function<std::vector<int>(int chain, int instance)> gpus;
};

// How the tasks of a ProcessJob reach their job's checkpoints: the storage
// their snapshots go to and the coordinator that hears of them (in this
// process for a local job, on the head for a cluster's). Called from the
// process's snapshot writer thread and from task threads.
class CheckpointLink {
 public:
  virtual ~CheckpointLink() = default;
  virtual checkpoint::CheckpointStorage& storage() = 0;
  virtual void acknowledged(std::uint64_t id, const checkpoint::TaskKey& task, std::uint64_t bytes,
                            std::int64_t alignment_ns) = 0;
  virtual void declined(std::uint64_t id, const checkpoint::TaskKey& task,
                        const std::string& reason) = 0;
  virtual void finished(const checkpoint::TaskKey& task) = 0;
};

class ProcessJob {
 public:
  // Plans the job; throws InvalidPlanError for a graph that cannot run.
  ProcessJob(std::shared_ptr<const detail::LogicalGraph> graph, ExecutionConfig config,
             std::string job_id, Placement placement = {});
  ~ProcessJob();  // stops the job if it runs, and joins its threads

  const graph::PhysicalPlan& plan() const { return plan_; }
  const detail::LogicalGraph& graph() const { return *graph_; }
  // The input queue of a task of this process (null for another process's).
  InputQueue* queue(int chain, int instance) { return queues_[chain][instance].get(); }
  // Fails the job from outside its tasks (e.g. a lost connection: a consequence).
  void fail(std::string error, FailureKind kind) { control_.fail(std::move(error), kind); }
  // Whether the error of a failed wait() is a cause or a consequence.
  FailureKind failure_kind() const { return control_.error_kind(); }
  // Runs `hook` when the job is cancelled; register before start().
  void on_cancel(std::function<void()> hook) { control_.on_cancel(std::move(hook)); }

  // Checkpoints: before start(), the link of a job with checkpoint_interval
  // set, and the checkpoint to restore when the job restarts from one.
  void enable_checkpoints(CheckpointLink& link, std::uint64_t restore_from = 0);
  // The coordinator's commands to this process's tasks (any thread).
  void trigger_checkpoint(std::uint64_t id);
  void trigger_final_checkpoint(std::uint64_t id);
  void checkpoint_complete(std::uint64_t id);
  void abort_checkpoint(std::uint64_t id);

  const std::string& id() const { return job_id_; }
  void start();
  void request_stop() { control_.request_stop(); }
  // Joins every task and returns the outcome (also when it failed).
  const JobResult& wait();
  // The statistics of this process's instances so far, from any thread after
  // start(); state kRunning.
  JobResult statistics() const;

 private:
  detail::InstanceMetrics& metrics(int node, int instance) { return *metrics_[node][instance]; }
  JobResult collect_result() const;

  std::shared_ptr<const detail::LogicalGraph> graph_;
  ExecutionConfig config_;
  std::string job_id_;
  std::string node_id_;
  graph::PhysicalPlan plan_;
  bool is_local(int chain, int instance) const;

  Placement placement_;
  JobControl control_;
  std::vector<std::vector<std::unique_ptr<detail::InstanceMetrics>>> metrics_;  // [node][instance]
  std::vector<std::vector<std::unique_ptr<runtime::InputQueue>>> queues_;       // [chain][instance]
  std::vector<std::unique_ptr<detail::MessageSink>> remote_tasks_;  // wrap placement_.remote_sink
  std::vector<runtime::Task> tasks_;
  // Set when the task of [chain][instance] has ended.
  std::vector<std::unique_ptr<std::atomic<bool>[]>> ended_;
  std::vector<std::thread> threads_;
  std::chrono::steady_clock::time_point started_;
  std::optional<JobResult> result_;

  class Checkpointing;  // the tasks' TaskCheckpointing and the snapshot writer
  std::unique_ptr<Checkpointing> checkpointing_;
};

}  // namespace sage::runtime
