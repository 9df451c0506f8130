#include "cli/cluster_commands.hpp"

#include <iostream>

#include "cli/output_format.hpp"
#include "cluster/cluster_config.hpp"
#include "sage/error.hpp"

namespace sage::cli {

int cluster_status(const GlobalOptions& global) {
  const auto info = global.jobmanager().cluster_status();
  print_as(global.format, info, [&] { return cluster_table(info, global.address); });
  return 0;
}

int dashboard_url(const GlobalOptions& global) {
  const std::string url = cluster::head_info_field(global.state_dir, "dashboard");
  if (url.empty()) {
    throw Error("no dashboard address in " + cluster::head_info_path(global.state_dir) +
                ": start the head (sage cluster start --head) or pass the --state-dir it was "
                "started with");
  }
  std::cout << url << "/#token=" << global.cluster_token() << std::endl;
  return 0;
}

}  // namespace sage::cli
