#include "cli/cluster_commands.hpp"

#include "cli/output_format.hpp"

namespace sage::cli {

int cluster_status(const GlobalOptions& global) {
  const auto info = global.jobmanager().cluster_status();
  print_as(global.format, info, [&] { return cluster_table(info, global.address); });
  return 0;
}

}  // namespace sage::cli
