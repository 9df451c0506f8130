// Starts a worker's task processes: builds each one's environment, forks and
// execs it as the leader of a process group of its own that dies with the
// worker (PR_SET_PDEATHSIG), with its pipes and the descriptors it inherits at
// the numbers its environment names. Each launch returns the process's owner.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "cluster/unique_fd.hpp"
#include "net/tls.hpp"

namespace sage::cluster {

// What a task process is started with.
struct TaskProcessLaunch {
  std::string program;            // the executable, run as argv[0]
  std::vector<std::string> args;  // after it
  // Where it runs: empty for the worker's directory; "/" when it cannot be entered.
  std::string working_directory;
  std::string assignment;        // TaskAssignment::encode() of its share
  std::vector<int> gpu_indices;  // its CUDA_VISIBLE_DEVICES, empty for none
  net::TlsFiles tls;             // for its data plane and its calls to the head
  std::string head_address;      // the cluster service, for its checkpoints
  int data_fd = -1;              // its data-plane socket, listening (borrowed)
  int lease_fd = -1;             // the worker's lease (borrowed; cluster/lease.hpp)
  // "NAME=value" the job sets (SubmitRequest.environment), over the worker's own.
  std::vector<std::string> environment;
};

// The environment ("NAME=value") of the task process `launch` describes: the
// worker's own (`inherited`, null-terminated, as environ), less what a task
// process must take only from its worker (SAGE_*, CUDA_VISIBLE_DEVICES), plus
// the job's own entries, its assignment, its descriptors' numbers, its GPUs
// and TLS files. When the
// worker itself has CUDA_VISIBLE_DEVICES (GPUs a resource manager gave it),
// the node's GPU i is the i-th device that lists.
std::vector<std::string> task_process_environment(const TaskProcessLaunch& launch,
                                                  const char* const* inherited);

// A launched task process: a child of this process and the leader of its own
// process group. Owns the read ends of its pipes and, until reap(), its pid:
// destroyed unreaped, it kills the group and reaps the process. One thread
// uses it; others may signal the group by pid() until it is reaped.
class LaunchedProcess {
 public:
  LaunchedProcess(pid_t pid, UniqueFd output, UniqueFd results)
      : pid_(pid), output_(std::move(output)), results_(std::move(results)) {}
  ~LaunchedProcess();
  LaunchedProcess(LaunchedProcess&& other) noexcept;
  LaunchedProcess& operator=(LaunchedProcess&&) = delete;
  LaunchedProcess(const LaunchedProcess&) = delete;
  LaunchedProcess& operator=(const LaunchedProcess&) = delete;

  pid_t pid() const { return pid_; }
  UniqueFd& output() { return output_; }    // its stdout and stderr
  UniqueFd& results() { return results_; }  // its result frames (task_process.hpp)

  // Whether it has ended; it stays unreaped.
  bool has_ended() const;
  // Waits until it has ended, without reaping it, so that its pid (and process
  // group) cannot be reused while another thread may still look at it.
  void wait_until_ended() const;
  // SIGKILL to every process left in its group.
  void kill_group() const;
  // Waits for it and reaps it: its wait status (see waitpid).
  int reap();

 private:
  pid_t pid_;
  bool reaped_ = false;
  UniqueFd output_, results_;
};

// Forks and execs the task process. An exec that fails ends the child with
// code 127; one that cannot set up its descriptors or directory, with 126.
// Throws sage::Error (saying what, without naming the node) when the pipes
// or the process cannot be made.
LaunchedProcess launch_task_process(const TaskProcessLaunch& launch);

}  // namespace sage::cluster
