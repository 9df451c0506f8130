// The head node: the JobManager that clients submit to (port 19001) and the
// cluster service that workers join (port 10001). It keeps the node registry
// (a node that stops sending heartbeats is dead), places each job's operator
// instances on nodes with free resources, drives the workers through the
// commands stream, gathers task output, and keeps job records in SQLite so
// they survive a restart, within limits: the newest job_history ended jobs,
// and each job's newest max_job_output_bytes of output. Every request is
// checked where it enters (cluster/request_validation.hpp); a bad value is
// refused with INVALID_ARGUMENT naming its field. It also serves the
// dashboard (src/dashboard/) over its state.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "cluster/cluster_config.hpp"
#include "cluster/request_validation.hpp"
#include "net/tls.hpp"

namespace sage::cluster {

struct HeadOptions {
  std::string host = "127.0.0.1";  // listen address; loopback unless told otherwise
  int cluster_port = kDefaultClusterPort;
  int jobmanager_port = kDefaultJobManagerPort;
  std::string state_dir;  // programs, job database
  std::string token;      // required on every call
  net::TlsFiles tls;      // TLS on both ports when tls.enabled()
  // Ended jobs beyond this many (the longest ended first) are forgotten, with
  // their output. At least 1.
  int job_history = 1000;
  // Per job; beyond it a job's oldest output lines are discarded, and readers
  // are told how many.
  std::uint64_t max_job_output_bytes = std::uint64_t{64} << 20;
  // Instances (the sum of its operators' parallelism) one job may have; a
  // submit with more is refused. 1 to kMaxInstancesPerJobLimit.
  int max_instances_per_job = kDefaultMaxInstancesPerJob;
  // The largest program an upload may bring; a larger one is refused as it
  // streams in, and nothing of it stays.
  std::uint64_t max_program_bytes = std::uint64_t{1} << 30;
  // The dashboard (/metrics, /api/v1, the page) on `host`; 0: any free port.
  int dashboard_port = kDefaultDashboardPort;
};

class Head {
 public:
  // Listens on both ports. Throws sage::Error naming the address when a port
  // is taken or the state directory is unusable.
  explicit Head(HeadOptions options);
  ~Head();
  Head(const Head&) = delete;
  Head& operator=(const Head&) = delete;

  int cluster_port() const;
  int jobmanager_port() const;
  // The dashboard's port: HTTPS when TLS is on, else HTTP.
  int dashboard_port() const;
  // Blocks until shutdown() is called (from another thread or a signal handler's thread).
  void wait();
  void shutdown();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sage::cluster
