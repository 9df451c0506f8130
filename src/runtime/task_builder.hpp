// Builds the task for one instance of one chain from the plan: its operators
// wired to each other and to channel writers, and its input channels wired to
// the head operator. Where the consumers' channels lead (a queue in this
// process, a connection to another) is the caller's choice, so local and
// distributed execution share this code.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "graph/physical_plan.hpp"
#include "runtime/task.hpp"
#include "sage/detail/instance_metrics.hpp"
#include "sage/detail/logical_graph.hpp"

namespace sage::runtime {

struct TaskContext {
  const detail::LogicalGraph* graph = nullptr;
  const graph::PhysicalPlan* plan = nullptr;
  const ExecutionConfig* config = nullptr;
  std::string job_id;
  std::string node_id;
  // The built-in metrics of instance `instance` of operator `node`.
  std::function<detail::InstanceMetrics&(int node, int instance)> metrics;
  // Where records for instance `instance` of chain `chain` are delivered.
  std::function<detail::MessageSink&(int chain, int instance)> sink;
  // Set when the job is asked to stop; may be null.
  const std::atomic<bool>* stop_requested = nullptr;
  // The GPUs (CUDA device numbers) a task holds; unset: none.
  std::function<std::vector<int>(int chain, int instance)> gpus;
};

// `queue` is the task's input queue (for a source chain, of checkpoint commands only).
Task build_task(const TaskContext& context, int chain, int instance, InputQueue* queue);

}  // namespace sage::runtime
