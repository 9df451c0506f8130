// `sage cluster start` and `sage cluster stop`: a head or a worker served by
// this process, in the foreground or as a daemon of the state directory, and
// the end of the daemons a state directory has. Each command returns the exit
// code; errors are sage::Error (CLI::ValidationError for a bad command line).
#pragma once

#include <string>

#include "cli/global_options.hpp"
#include "cluster/cluster_config.hpp"
#include "cluster/head.hpp"

namespace sage::cli {

// Resources of the node a worker runs on; 0 / -1 / "" take what the machine has.
struct NodeFlags {
  double num_cpus = -1;
  int num_gpus = -1;
  std::string memory;
  std::string node_id;
  std::string node_address;
};

// The flags of `sage cluster start`.
struct StartFlags {
  bool head = false, worker = false, foreground = false;
  std::string host = "127.0.0.1";
  int port = cluster::kDefaultClusterPort;
  int jobmanager_port = cluster::kDefaultJobManagerPort;
  int dashboard_port = cluster::kDefaultDashboardPort;
  std::string head_address;
  NodeFlags node;
  int job_history = cluster::HeadOptions{}.job_history;
  std::string max_job_output;    // "" keeps the head's default
  std::string max_program_size;  // "" keeps the head's default
  int max_instances_per_job = cluster::HeadOptions{}.max_instances_per_job;
};

// Checks the flags before anything is written, then serves until SIGTERM or
// SIGINT (--foreground) or starts a daemon and returns once it serves.
int cluster_start(const GlobalOptions& global, StartFlags& flags);
// Stops the daemons of global.state_dir, workers first.
int cluster_stop(const GlobalOptions& global);

}  // namespace sage::cli
