#include "cluster/process_launcher.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <set>
#include <sstream>
#include <string_view>
#include <utility>

#include "cluster/cluster_config.hpp"
#include "cluster/request_validation.hpp"
#include "sage/error.hpp"

extern char** environ;

namespace sage::cluster {
namespace {

// Where a task process finds what it inherits; its environment names them.
constexpr int kChildDataFd = 3, kChildResultFd = 4, kChildLeaseFd = 5;

struct Pipe {
  UniqueFd read, write;
};

// Both ends close-on-exec: the child gets its end through dup2().
Pipe make_pipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw Error("cannot create pipes");
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace

std::vector<std::string> task_process_environment(const TaskProcessLaunch& launch,
                                                  const char* const* inherited) {
  std::vector<std::string> env;
  // The worker's own CUDA_VISIBLE_DEVICES (e.g. the GPUs Slurm allocated): the
  // node's GPU i is its i-th entry.
  std::vector<std::string> node_gpus;
  constexpr std::string_view kCuda = "CUDA_VISIBLE_DEVICES=";
  const auto name_of = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  std::set<std::string> set_by_job;
  for (const auto& entry : launch.environment) set_by_job.insert(name_of(entry));
  for (const char* const* e = inherited; *e != nullptr; ++e) {
    const std::string entry = *e;
    if (entry.starts_with(kCuda)) {
      std::istringstream list(entry.substr(kCuda.size()));
      for (std::string gpu; std::getline(list, gpu, ',');) node_gpus.push_back(gpu);
    }
    if (set_only_by_worker(name_of(entry))) continue;
    if (set_by_job.count(name_of(entry)) > 0) continue;
    env.push_back(entry);
  }
  for (const auto& entry : launch.environment) {
    if (set_only_by_worker(name_of(entry))) continue;  // the head refuses these
    env.push_back(entry);
  }
  env.push_back(std::string(kAssignmentVariable) + "=" + launch.assignment);
  // The task process's data plane uses this node's TLS files.
  for (auto& entry : launch.tls.environment()) env.push_back(std::move(entry));
  env.push_back(std::string(kHeadAddressVariable) + "=" + launch.head_address);
  env.push_back(std::string(kDataFdVariable) + "=" + std::to_string(kChildDataFd));
  env.push_back(std::string(kResultFdVariable) + "=" + std::to_string(kChildResultFd));
  env.push_back(std::string(kLeaseFdVariable) + "=" + std::to_string(kChildLeaseFd));
  std::string gpus;
  for (int g : launch.gpu_indices) {
    const bool mapped = g >= 0 && static_cast<std::size_t>(g) < node_gpus.size();
    gpus += (gpus.empty() ? "" : ",") + (mapped ? node_gpus[g] : std::to_string(g));
  }
  env.push_back("CUDA_VISIBLE_DEVICES=" + gpus);
  return env;
}

LaunchedProcess launch_task_process(const TaskProcessLaunch& launch) {
  Pipe output = make_pipe();
  Pipe results = make_pipe();
  // Everything the child needs is prepared before fork: after it, only
  // async-signal-safe calls are allowed.
  std::vector<std::string> args{launch.program};
  args.insert(args.end(), launch.args.begin(), launch.args.end());
  std::vector<std::string> env = task_process_environment(launch, environ);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const char* cwd = launch.working_directory.c_str();

  // The child's descriptors: each source goes to its number.
  std::array<std::pair<int, int>, 5> child_fds = {{{output.write.get(), STDOUT_FILENO},
                                                   {output.write.get(), STDERR_FILENO},
                                                   {launch.data_fd, kChildDataFd},
                                                   {results.write.get(), kChildResultFd},
                                                   {launch.lease_fd, kChildLeaseFd}}};
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    // A task process never outlives its worker, even one killed outright.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(125);
    setpgid(0, 0);
    // Every source first goes above the numbers given out, so that no
    // dup2() overwrites a source still to come (the lease's may be 3).
    for (auto& [from, to] : child_fds) {
      from = fcntl(from, F_DUPFD_CLOEXEC, kChildLeaseFd + 1);
      if (from < 0) _exit(126);
    }
    for (const auto& [from, to] : child_fds) dup2(from, to);
    if (*cwd != '\0' && chdir(cwd) != 0) {
      if (chdir("/") != 0) _exit(126);
    }
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  if (pid < 0) throw Error("cannot start a process");
  // Also here, so that the group exists before anyone signals it (the child
  // may not have run yet); one of the two calls fails harmlessly.
  setpgid(pid, pid);
  return LaunchedProcess(pid, std::move(output.read), std::move(results.read));
}

LaunchedProcess::LaunchedProcess(LaunchedProcess&& other) noexcept
    : pid_(other.pid_),
      reaped_(std::exchange(other.reaped_, true)),
      output_(std::move(other.output_)),
      results_(std::move(other.results_)) {}

LaunchedProcess::~LaunchedProcess() {
  if (reaped_) return;
  kill_group();
  reap();
}

bool LaunchedProcess::has_ended() const {
  siginfo_t info{};
  return waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == pid_;
}

void LaunchedProcess::wait_until_ended() const {
  siginfo_t ended{};
  while (waitid(P_PID, static_cast<id_t>(pid_), &ended, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
  }
}

void LaunchedProcess::kill_group() const { ::kill(-pid_, SIGKILL); }

int LaunchedProcess::reap() {
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  return status;
}

}  // namespace sage::cluster
