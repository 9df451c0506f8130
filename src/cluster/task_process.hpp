// A task process: one process of a distributed job, running the tasks the
// scheduler assigned to it. The user's program rebuilt the dataflow (the
// program is the job); this checks that it planned to the same fingerprint,
// connects to the peer processes and runs its share until every one of its
// tasks has ended.
#pragma once

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
  SAGE_FIELDS(job_id, token, fingerprint, process_index, data_addresses, process_of_task, node_id)

  // As text safe for an environment variable (hex), and back (throws sage::Error).
  std::string encode() const;
  static TaskAssignment decode(std::string_view text);
};

// Runs this process's share and returns the statistics of its instances.
// `listener` is this process's data-plane socket, already listening; with
// `tls` enabled its connections in and out are encrypted;
// `on_running` is called once its tasks have started, with a function that
// asks them to stop: sources end, records in flight are processed, and the
// result says JobState::kStopped. Any thread may call it, once or more.
// Throws InvalidPlanError if the graph plans to another fingerprint.
JobResult run_task_process(
    std::shared_ptr<const detail::LogicalGraph> graph, const ExecutionConfig& config,
    const TaskAssignment& assignment, net::Socket listener, const net::TlsFiles& tls = {},
    const std::function<void(std::function<void()> request_stop)>& on_running = {});

}  // namespace sage::cluster
