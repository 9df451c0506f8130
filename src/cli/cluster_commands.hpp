// `sage cluster status`: what the head knows of the cluster (its nodes,
// their resources and heartbeats, the jobs running or waiting), and `sage
// dashboard`: where to see it in a browser. Each command returns the exit
// code; errors are sage::Error.
#pragma once

#include "cli/global_options.hpp"

namespace sage::cli {

int cluster_status(const GlobalOptions& global);
// Prints the dashboard's URL of the head started from global.state_dir, the
// token in its fragment (a browser never sends a fragment to the server).
int dashboard_url(const GlobalOptions& global);

}  // namespace sage::cli
