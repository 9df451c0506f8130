// `sage cluster status`: what the head knows of the cluster (its nodes,
// their resources and heartbeats, the jobs running or waiting). Each command
// returns the exit code; errors are sage::Error.
#pragma once

#include "cli/global_options.hpp"

namespace sage::cli {

int cluster_status(const GlobalOptions& global);

}  // namespace sage::cli
