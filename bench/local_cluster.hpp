// A throwaway local cluster for the benchmarks, started and stopped with the
// `sage` command (SAGE_CLI_BINARY): a head without a worker of its own and two
// workers, in a temporary state directory; and the shell helpers it uses.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>

#include "support/test_certificates.hpp"

namespace sage::bench {

// Runs `command` in a shell and returns its output (stdout and stderr); a
// failure ends the benchmark, saying which command failed.
inline std::string run_command(const std::string& command) {
  std::string output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return output;
  char buffer[4096];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  if (pclose(pipe) != 0) {
    std::fprintf(stderr, "bench: `%s` failed:\n%s", command.c_str(), output.c_str());
    std::exit(1);
  }
  return output;
}

inline std::string json_field(const std::string& path, const std::string& field) {
  std::ifstream file(path);
  const std::string text((std::istreambuf_iterator<char>(file)), {});
  std::smatch match;
  std::regex_search(text, match, std::regex("\"" + field + "\":\"([^\"]+)\""));
  return match[1];
}

// A head (no worker of its own) and two workers, stopped when this ends;
// with `tls`, every node gets a certificate of a throwaway CA and the jobs
// submitted afterwards trust it.
class LocalCluster {
 public:
  explicit LocalCluster(bool tls = false) {
    char dir[] = "/tmp/sage-bench-XXXXXX";
    if (mkdtemp(dir) == nullptr) std::exit(1);
    state_dir_ = dir;
    std::string sage = SAGE_CLI_BINARY + std::string(" --state-dir ") + state_dir_;
    if (tls) {
      const sage::net::TlsFiles files = sage::testing::write_test_certificates(state_dir_);
      sage += " --tls-ca " + files.ca + " --tls-cert " + files.cert + " --tls-key " + files.key;
      setenv("SAGE_TLS_CA", files.ca.c_str(), 1);
    } else {
      unsetenv("SAGE_TLS_CA");
    }
    run_command(
        sage +
        " cluster start --head --port 0 --jobmanager-port 0 --dashboard-port 0 --num-cpus 0");
    const std::string cluster = json_field(state_dir_ + "/head.json", "cluster");
    for (const char* node : {"w1", "w2"}) {
      run_command(sage + " cluster start --worker --head-address=" + cluster + " --node-id " +
                  node);
    }
    setenv("SAGE_ADDRESS", json_field(state_dir_ + "/head.json", "jobmanager").c_str(), 1);
    setenv("SAGE_STATE_DIR", state_dir_.c_str(), 1);
  }
  ~LocalCluster() {
    run_command(SAGE_CLI_BINARY + std::string(" --state-dir ") + state_dir_ + " cluster stop");
    std::filesystem::remove_all(state_dir_);
  }
  const std::string& state_dir() const { return state_dir_; }

 private:
  std::string state_dir_;
};

}  // namespace sage::bench
