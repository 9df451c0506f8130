// RemoteEnvironment: runs the job on a sage cluster. submit() uploads this
// program (once per content hash), the plan and the arguments to the
// JobManager; worker nodes start this same program as task processes, where
// the same main() runs up to submit() again, rebuilding the identical
// dataflow, and submit() then runs that process's share of the instances.
//
// The rule this implies: code before submit() runs in every task process.
// Keep side effects (printing a banner, writing files) after submit(), or
// guard them with sage::is_task_process().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sage/environment.hpp"

namespace sage {
namespace cluster {
class JobManagerClient;
}  // namespace cluster

// True in a task process started by a worker (and false in the program the
// user ran).
bool is_task_process();

struct ClusterConfig {
  // The cluster token. Empty: $SAGE_TOKEN, else the token file of the head in
  // state_dir.
  std::string token;
  // Empty: $SAGE_STATE_DIR, else ~/.sage.
  std::string state_dir;
  // Print the output of task processes as it arrives (with autostop or wait()).
  bool stream_output = true;
  // Variables of this process's environment that the job's task processes get
  // too, with the values they have at submit(), over the worker's own (one not
  // set here leaves the worker's). The default carries the endpoint that
  // sage::rag's OpenAI operators read, so that the submitter's configuration
  // reaches the task processes. They travel with the job to the head (kept in
  // memory, never logged) and to the workers; names SAGE_* and
  // CUDA_VISIBLE_DEVICES are the worker's own and cannot be forwarded.
  std::vector<std::string> forward_environment = {"OPENAI_API_KEY", "OPENAI_BASE_URL",
                                                  "OPENAI_MODEL"};
};

// What the task processes of a job run when not this program with its own
// arguments: an interpreted job (sage's Python API) names the interpreter,
// the script's arguments, and the script's directory, which is uploaded as a
// bundle by content hash (at most max_bundle_bytes in max_bundle_files
// regular files) and unpacked on every node; task processes run in it.
struct TaskProgram {
  std::string executable = "/proc/self/exe";  // uploaded by content hash, argv[0]
  std::vector<std::string> args;              // after it
  std::string bundle_directory;               // empty: none, the working directory is sent
  std::uint64_t max_bundle_bytes = std::uint64_t{64} << 20;
  std::uint32_t max_bundle_files = 10'000;
  std::string how_to_raise_limits;       // for the error of a directory over them
  std::vector<std::string> environment;  // "NAME=value" the task processes get
};

class RemoteEnvironment : public Environment {
 public:
  // $SAGE_ADDRESS ("host:port"), when set, overrides host and port, so a
  // program can be pointed at another cluster without a rebuild. Without it,
  // the default host and port mean the head started from the state directory
  // (the address in its head.json, as for the `sage` command), else
  // 127.0.0.1:19001.
  explicit RemoteEnvironment(std::string name, std::string host = "127.0.0.1", int port = 19001,
                             ClusterConfig config = {}, ExecutionConfig execution = {});
  ~RemoteEnvironment() override;

  // Throws sage::Error with the address (and where it came from) and how to
  // start a head when no JobManager answers, and when the cluster can never
  // fit the job. While a followed job waits for resources (PENDING), says so
  // on stderr with the reason, and again when it starts.
  std::string submit(bool autostop = false) override;
  JobResult wait() override;
  void stop() override;

  const std::string& address() const { return address_; }
  // Replaces this program and its arguments as the job's task program.
  void set_task_program(TaskProgram program) { task_program_ = std::move(program); }

 private:
  std::string address_;
  std::string where_;  // address_ for errors, with where it came from
  ClusterConfig cluster_;
  std::optional<TaskProgram> task_program_;
  std::string job_id_;
  std::optional<JobResult> final_;                     // once wait() has seen the job end
  std::unique_ptr<cluster::JobManagerClient> client_;  // from submit() on
};

}  // namespace sage
