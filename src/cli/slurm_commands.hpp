// Slurm: an allocation becomes a sage cluster for the length of one program
// (docs/deploy.md).
//   sage slurm submit [--port N] [--jobmanager-port N] [--dashboard-port N] [sbatch options] --
//   ./program [args]
//     submits a batch job that runs `sage slurm run` on the allocation's first node;
//   sage slurm run [--port N] [--jobmanager-port N] [--dashboard-port N] -- ./program [args]
//     inside an allocation (a batch job, or salloc): a head on the first
//     node and a worker on every node (srun steps), each with the resources
//     Slurm gave the job there; the program submitted to them; everything
//     stopped once it ends. The cluster token is made here and travels in
//     the steps' environment, never on a command line.
// `sage slurm head` and `sage slurm worker` are those steps (not for users).
#pragma once

#include <string>
#include <vector>

#include "cli/global_options.hpp"
#include "cluster/cluster_config.hpp"

namespace sage::cli {

struct SlurmFlags {
  int port = cluster::kDefaultClusterPort;
  int jobmanager_port = cluster::kDefaultJobManagerPort;
  int dashboard_port = cluster::kDefaultDashboardPort;
  std::string head_address;  // `slurm worker`: the head's cluster host:port
};

int slurm_submit(const SlurmFlags& flags, const std::vector<std::string>& sbatch_options,
                 const std::vector<std::string>& command);
int slurm_run(GlobalOptions global, const SlurmFlags& flags,
              const std::vector<std::string>& command);
int slurm_head(const GlobalOptions& global, const SlurmFlags& flags);
int slurm_worker(const GlobalOptions& global, const SlurmFlags& flags);

}  // namespace sage::cli
