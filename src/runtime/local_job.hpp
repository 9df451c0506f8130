// One job running inside this process: every task on its own thread, channels
// as in-memory queues. Owned by LocalEnvironment; start() once, wait() from
// the owning thread, request_stop() from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "graph/physical_plan.hpp"
#include "runtime/input_queue.hpp"
#include "runtime/job_control.hpp"
#include "runtime/task.hpp"
#include "sage/job_result.hpp"

namespace sage {

class LocalJob {
 public:
  // Plans the job; throws InvalidPlanError for a graph that cannot run.
  LocalJob(std::shared_ptr<const detail::LogicalGraph> graph, ExecutionConfig config,
           std::string job_id);
  ~LocalJob();  // stops the job if it runs, and joins its threads

  const std::string& id() const { return job_id_; }
  void start();
  void request_stop() { control_.request_stop(); }
  // Joins every task and returns the outcome (also when it failed).
  const JobResult& wait();

 private:
  detail::InstanceMetrics& metrics(int node, int instance) { return *metrics_[node][instance]; }
  JobResult collect_result() const;

  std::shared_ptr<const detail::LogicalGraph> graph_;
  ExecutionConfig config_;
  std::string job_id_;
  std::string node_id_;
  graph::PhysicalPlan plan_;
  runtime::JobControl control_;
  std::vector<std::vector<std::unique_ptr<detail::InstanceMetrics>>> metrics_;  // [node][instance]
  std::vector<std::vector<std::unique_ptr<runtime::InputQueue>>> queues_;       // [chain][instance]
  std::vector<runtime::Task> tasks_;
  std::vector<std::thread> threads_;
  std::chrono::steady_clock::time_point started_;
  std::optional<JobResult> result_;
};

}  // namespace sage
