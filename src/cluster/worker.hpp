// The worker agent of a node: joins the head, reports its resources and a
// heartbeat, and runs task processes as the head commands: it reserves their
// data-plane ports, fetches the job's program (cached by hash), starts the
// processes with their assignment (cluster/process_launcher.hpp), forwards
// their output lines and progress (cluster/output_relay.hpp), reports how
// they ended, and kills them when the job stops, ends, or the head is lost.
// Its task processes hold a lease (cluster/lease.hpp) that only heartbeats the
// head answers renew: they end themselves also when this worker cannot act.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "net/tls.hpp"

namespace sage::cluster {

struct WorkerOptions {
  std::string head_address = "127.0.0.1:10001";
  std::string node_id;             // unique in the cluster
  std::string host = "127.0.0.1";  // where peers reach this node's task processes
  double num_cpus = 0;             // 0: the number of cores
  int num_gpus = -1;               // -1: the GPUs present
  std::uint64_t memory_bytes = 0;  // 0: the machine's memory
  std::string state_dir;           // the program cache lives here
  std::string token;
  net::TlsFiles tls;  // for the head connection and, passed on, the task processes
  // Called once the head has registered this node (each time it joins).
  std::function<void()> on_joined;
};

class Worker {
 public:
  explicit Worker(WorkerOptions options);
  ~Worker();  // stops, killing any task process still running
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Serves the head until stop(). Rejoins after losing the head. Throws
  // sage::Error when the head refuses this worker (wrong token, node id taken)
  // and when no head answers at the first attempt to join.
  void run();
  void stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sage::cluster
