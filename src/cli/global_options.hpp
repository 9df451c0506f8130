// The options every `sage` command shares (--state-dir, --address, --token,
// --format, --tls-*), resolved once by main() against the environment, and
// the exit codes of the command.
#pragma once

#include <string>

#include "cluster/jobmanager_client.hpp"
#include "net/tls.hpp"

namespace sage::cli {

// Exit codes: 1 for errors of the cluster or a job, 2 for bad command lines.
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

struct GlobalOptions {
  std::string state_dir;  // --state-dir, $SAGE_STATE_DIR, ~/.sage
  std::string address;    // the JobManager: --address, $SAGE_ADDRESS, the local head
  std::string token;      // --token; empty: $SAGE_TOKEN, else the token file
  std::string format = "table";
  net::TlsFiles tls;  // --tls-*, else $SAGE_TLS_*

  // --token, else $SAGE_TOKEN, else the token file in state_dir. Throws
  // sage::Error naming those places when none has one.
  std::string cluster_token() const;
  // A client of the JobManager at `address`, whose calls time out after
  // cluster::kCommandCallTimeout.
  cluster::JobManagerClient jobmanager() const;
};

}  // namespace sage::cli
