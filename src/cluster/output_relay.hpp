// Carries what a task process writes to where its worker sends it: reads the
// process's output pipe and result pipe until both close (or the process has
// ended and what it left behind lets them go), sends its output lines in
// batches and its progress reports to a sink, logs its warnings, and keeps its
// exit report. The sink (the worker's RPCs to the head) is injected, so the
// relay runs without a head; it is called on the relaying thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "cluster/process_launcher.hpp"
#include "cluster/task_output.hpp"
#include "sage.pb.h"

namespace sage::cluster {

// Output lines go out in batches of at most this many lines or bytes (well
// under the RPC limit), at least this often.
constexpr std::size_t kOutputBatchLines = 256;
constexpr std::size_t kOutputBatchBytes = 1 << 20;
constexpr auto kOutputFlushInterval = std::chrono::milliseconds(100);
// How long the output of an ended task process is still read while a process
// it started outside its process group holds the pipe.
constexpr auto kLeftoverOutputGrace = std::chrono::seconds(1);

// Where the relay sends what it reads; the reports name the job and process.
struct RelaySink {
  std::function<void(const rpc::OutputReport&)> output;      // a batch of lines, never empty
  std::function<void(const rpc::ProgressReport&)> progress;  // as the process sent it
};

class OutputRelay {
 public:
  // For process `process_index` of job `job_id` on node `node_id`, whose lines
  // are prefixed with that node and the process's pid.
  OutputRelay(std::string job_id, int process_index, std::string node_id, RelaySink sink);

  // Relays until `process` closes both its pipes (closing them here too). Once
  // it has ended, what it left in its group is killed and others that hold a
  // pipe get kLeftoverOutputGrace. Returns its exit report (serialized), empty
  // if it sent none. Bytes on the result pipe that are not a frame are logged
  // and dropped.
  std::string relay(LaunchedProcess& process);

 private:
  void add_lines();
  void flush();
  void take_results();

  std::string node_id_;
  RelaySink sink_;
  pid_t pid_ = 0;
  rpc::OutputReport batch_;
  std::size_t batch_bytes_ = 0;
  std::chrono::steady_clock::time_point last_flush_;
  std::vector<std::string> lines_;  // complete, not yet in the batch
  std::string results_;             // result-pipe bytes not yet a whole frame
  std::string exit_report_;
};

}  // namespace sage::cluster
