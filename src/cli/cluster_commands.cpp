#include "cli/cluster_commands.hpp"

#include <iostream>

#include "cli/output_format.hpp"

namespace sage::cli {

int cluster_status(const GlobalOptions& global) {
  const auto info = global.jobmanager().cluster_status();
  if (global.format == "json") {
    std::cout << to_json(info) << std::endl;
  } else {
    std::cout << cluster_table(info, global.address);
  }
  return 0;
}

}  // namespace sage::cli
