#include "cli/global_options.hpp"

#include "cluster/cluster_config.hpp"

namespace sage::cli {

std::string GlobalOptions::cluster_token() const {
  return token.empty() ? cluster::find_token(state_dir) : token;
}

cluster::JobManagerClient GlobalOptions::jobmanager() const {
  return cluster::JobManagerClient(cluster::JobManagerClientOptions{
      .address = address,
      .token = token,
      .state_dir = state_dir,
      .call_timeout = cluster::kCommandCallTimeout,
  });
}

}  // namespace sage::cli
