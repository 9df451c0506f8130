#include "cli/slurm_commands.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include "cli/daemon_commands.hpp"
#include "cli/job_commands.hpp"
#include "sage/error.hpp"

extern char** environ;

namespace sage::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// How long the head and the workers of an allocation may take to come up.
constexpr auto kClusterStartTimeout = std::chrono::seconds(60);
// How long the steps may take to stop once the program has ended.
constexpr auto kStopTimeout = std::chrono::seconds(30);

std::string required_env(const char* name, const char* why) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    throw Error(fmt::format("{} is not set: {}", name, why));
  }
  return value;
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

// `text` as one word of a bash script.
std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string this_program() {
  std::error_code error;
  const auto path = fs::read_symlink("/proc/self/exe", error);
  if (error) throw Error("cannot find the sage program itself: " + error.message());
  return path.string();
}

// `name` as an absolute path: as given when it has a '/', else found in $PATH.
std::string absolute_program(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    const std::string path = fs::absolute(name).lexically_normal().string();
    if (::access(path.c_str(), X_OK) != 0) {
      throw Error("'" + name +
                  "' is not an executable program; pass the path of a program "
                  "built with sage");
    }
    return path;
  }
  std::istringstream dirs(env_or("PATH", "/usr/bin:/bin"));
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string path = (fs::path(dir.empty() ? "." : dir) / name).string();
    if (::access(path.c_str(), X_OK) == 0) return fs::absolute(path).string();
  }
  throw Error("'" + name + "' is not in $PATH; pass the path of a program built with sage");
}

// Runs `argv` (found in $PATH) and returns its standard output; throws
// naming the command when it cannot run or fails.
// With `quiet`, its standard error goes nowhere.
std::string output_of(const std::vector<std::string>& argv, const std::string& input = "",
                      bool quiet = false) {
  std::array<int, 2> in{}, out{};
  if (::pipe2(in.data(), O_CLOEXEC) != 0 || ::pipe2(out.data(), O_CLOEXEC) != 0) {
    throw Error(std::string("cannot create a pipe: ") + std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  if (quiet) posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> args = argv;
  std::vector<char*> raw;
  for (auto& a : args) raw.push_back(a.data());
  raw.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, raw[0], &actions, nullptr, raw.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  ::close(out[1]);
  if (spawned != 0) {
    ::close(in[1]);
    ::close(out[0]);
    throw Error(
        fmt::format("cannot run {}: {}; is Slurm's client (package slurm-client) "
                    "installed here?",
                    argv[0], std::strerror(spawned)));
  }
  for (std::size_t at = 0; at < input.size();) {
    const ssize_t n = ::write(in[1], input.data() + at, input.size() - at);
    if (n <= 0 && errno != EINTR) break;
    if (n > 0) at += static_cast<std::size_t>(n);
  }
  ::close(in[1]);
  std::string output;
  std::array<char, 4096> buffer{};
  for (ssize_t n; (n = ::read(out[0], buffer.data(), buffer.size())) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    output.append(buffer.data(), static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string command;
    for (const auto& a : argv) command += (command.empty() ? "" : " ") + a;
    throw Error(fmt::format("`{}` failed ({})", command,
                            WIFEXITED(status)
                                ? "exit code " + std::to_string(WEXITSTATUS(status))
                                : std::string("signal ") + strsignal(WTERMSIG(status))));
  }
  return output;
}

// Starts `argv` (found in $PATH) with this process's environment.
pid_t spawn(const std::vector<std::string>& argv) {
  std::vector<std::string> args = argv;
  std::vector<char*> raw;
  for (auto& a : args) raw.push_back(a.data());
  raw.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, raw[0], nullptr, nullptr, raw.data(), environ);
  if (spawned != 0) throw Error(fmt::format("cannot run {}: {}", argv[0], std::strerror(spawned)));
  return pid;
}

// The allocation's nodes, in Slurm's order (the first runs the head).
std::vector<std::string> allocated_nodes() {
  const std::string list = required_env(
      "SLURM_JOB_NODELIST",
      "sage slurm run runs inside a Slurm allocation (sbatch or salloc); use sage slurm submit");
  std::istringstream names(output_of({"scontrol", "show", "hostnames", list}));
  std::vector<std::string> nodes;
  for (std::string name; names >> name;) nodes.push_back(name);
  if (nodes.empty()) throw Error("Slurm lists no node in allocation " + list);
  return nodes;
}

// The address other nodes reach `node` at: its NodeAddr in Slurm.
std::string node_address(const std::string& node) {
  const std::string description = output_of({"scontrol", "show", "node", node});
  const auto at = description.find("NodeAddr=");
  if (at == std::string::npos) return node;
  const auto start = at + std::string("NodeAddr=").size();
  return description.substr(start, description.find_first_of(" \n", start) - start);
}

// The state directory of a step on this node: node-local, one per job.
std::string step_state_dir(const std::string& name) {
  return fmt::format("{}/sage-slurm-{}/{}", env_or("TMPDIR", "/tmp"),
                     required_env("SLURM_JOB_ID", "this runs as a step of a Slurm job"), name);
}

// Removes a step's state directory when the step ends, however it ends.
class RemovedAtExit {
 public:
  explicit RemovedAtExit(std::string path) : path_(std::move(path)) {}
  ~RemovedAtExit() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
    fs::remove(fs::path(path_).parent_path(), ignored);  // if it was the last step here
  }

 private:
  std::string path_;
};

// A step of this job, started with srun as `name`.
struct Step {
  std::string name;
  pid_t srun = 0;
};

// Waits until `ready()` or the deadline; throws `why_not()` past it.
template <class Ready, class WhyNot>
void wait_until(Ready ready, WhyNot why_not, const std::vector<Step>& steps) {
  const auto deadline = Clock::now() + kClusterStartTimeout;
  while (!ready()) {
    for (const auto& step : steps) {
      int status = 0;
      if (::waitpid(step.srun, &status, WNOHANG) == step.srun) {
        throw Error(why_not() + "; a step of the cluster ended (see the job's output)");
      }
    }
    if (Clock::now() > deadline) throw Error(why_not());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

// Stops the steps: SIGTERM to their tasks (the head and workers end their
// task processes and remove their state directories), then, past
// kStopTimeout, SIGKILL to srun, which makes Slurm kill whatever is left.
// (SIGTERM to srun itself would have Slurm kill the tasks at once.)
void stop_steps(const std::vector<Step>& steps) {
  const std::string job = env_or("SLURM_JOB_ID", "");
  try {
    std::istringstream listed(
        output_of({"squeue", "--noheader", "--steps", "--jobs=" + job, "--format=%i %j"}));
    for (std::string id, name; listed >> id >> name;) {
      for (const auto& step : steps) {
        if (step.name != name) continue;
        try {
          output_of({"scancel", "--signal=TERM", id}, "", /*quiet=*/true);
        } catch (const Error&) {
          // Slurm 22.05's scancel signals a step, then may still exit 225
          // ("Invalid job id"); the wait below tells whether it ended.
        }
      }
    }
  } catch (const Error& e) {
    std::cerr << "sage slurm run: " << e.what() << "; killing the steps" << std::endl;
  }
  const auto deadline = Clock::now() + kStopTimeout;
  for (const auto& step : steps) {
    int status = 0;
    while (::waitpid(step.srun, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ::kill(step.srun, SIGKILL);
        ::waitpid(step.srun, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

}  // namespace

int slurm_submit(const SlurmFlags& flags, const std::vector<std::string>& sbatch_options,
                 const std::vector<std::string>& command) {
  if (command.empty()) {
    throw CLI::ValidationError(
        "sage slurm submit needs a program after --: sage slurm submit -N 2 -- ./my_job [args]");
  }
  std::string run = shell_quote(this_program());
  run += fmt::format(" slurm run --port {} --jobmanager-port {} --dashboard-port {} --", flags.port,
                     flags.jobmanager_port, flags.dashboard_port);
  run += " " + shell_quote(absolute_program(command[0]));
  for (std::size_t i = 1; i < command.size(); ++i) run += " " + shell_quote(command[i]);
  const std::string script =
      "#!/bin/bash\n"
      "# Written by `sage slurm submit`: this allocation is a sage cluster while the program "
      "runs.\n"
      "exec " +
      run + "\n";
  std::vector<std::string> sbatch{"sbatch", "--parsable"};
  sbatch.insert(sbatch.end(), sbatch_options.begin(), sbatch_options.end());
  const bool waits =
      std::find(sbatch_options.begin(), sbatch_options.end(), "--wait") != sbatch_options.end();
  std::string job;
  try {
    job = output_of(sbatch, script);
  } catch (const Error& e) {
    // With --wait, sbatch's exit code is the job's: say whose it is.
    std::cerr << "sage: error: " << e.what()
              << (waits ? " (with --wait: the batch job failed; see its output file)" : "")
              << std::endl;
    return kExitError;
  }
  job = job.substr(0, job.find_first_of(";\n"));
  std::cout << "submitted Slurm batch job " << job
            << (waits ? " and it ended" : "; stop it with: scancel " + job) << std::endl;
  return 0;
}

int slurm_run(GlobalOptions global, const SlurmFlags& flags,
              const std::vector<std::string>& command) {
  if (command.empty()) {
    throw CLI::ValidationError(
        "sage slurm run needs a program after --: sage slurm run -- ./my_job [args]");
  }
  const std::vector<std::string> nodes = allocated_nodes();
  const std::string head_host = node_address(nodes.front());
  // Made here, passed to the steps in their environment (srun --export=ALL).
  global.token = cluster::new_token();
  setenv("SAGE_TOKEN", global.token.c_str(), 1);
  global.address = fmt::format("{}:{}", head_host, flags.jobmanager_port);
  const std::string sage = this_program();
  const std::string head_cluster = fmt::format("{}:{}", head_host, flags.port);
  std::cout << fmt::format("sage slurm run: head on {} ({}), workers on {} node(s)", nodes.front(),
                           head_host, nodes.size())
            << std::endl;

  std::vector<Step> steps;
  const std::string head_step = "sage-head-" + std::to_string(flags.port);
  const std::string worker_step = "sage-workers-" + std::to_string(flags.port);
  int code = kExitError;
  try {
    steps.push_back(
        {head_step, spawn({"srun", "--overlap", "--export=ALL", "--job-name=" + head_step,
                           "--nodes=1", "--ntasks=1", "--nodelist=" + nodes.front(), sage, "slurm",
                           "head", "--port", std::to_string(flags.port), "--jobmanager-port",
                           std::to_string(flags.jobmanager_port), "--dashboard-port",
                           std::to_string(flags.dashboard_port)})});
    const auto client = global.jobmanager();
    std::string last_error;
    wait_until(
        [&] {
          try {
            client.cluster_status();
            return true;
          } catch (const Error& e) {
            last_error = e.what();
            return false;
          }
        },
        [&] {
          return fmt::format("the head on {} did not answer within {} s: {}", nodes.front(),
                             kClusterStartTimeout.count(), last_error);
        },
        steps);
    steps.push_back(
        {worker_step, spawn({"srun", "--overlap", "--export=ALL", "--job-name=" + worker_step,
                             "--nodes=" + std::to_string(nodes.size()), "--ntasks-per-node=1",
                             "--ntasks=" + std::to_string(nodes.size()), sage, "slurm", "worker",
                             "--head-address", head_cluster})});
    int joined = 0;
    wait_until(
        [&] {
          joined = 0;
          const rpc::ClusterInfo cluster = client.cluster_status();
          for (const auto& node : cluster.nodes()) joined += node.alive() ? 1 : 0;
          return joined == static_cast<int>(nodes.size());
        },
        [&] {
          return fmt::format("{} of the {} workers joined the head within {} s", joined,
                             nodes.size(), kClusterStartTimeout.count());
        },
        steps);
    code = job_submit(global, command);
  } catch (...) {
    stop_steps(steps);
    throw;
  }
  stop_steps(steps);
  return code;
}

int slurm_head(const GlobalOptions& global, const SlurmFlags& flags) {
  GlobalOptions step = global;
  step.state_dir = step_state_dir("head");
  const RemovedAtExit cleanup(step.state_dir);
  StartFlags start;
  start.head = true;
  start.foreground = true;
  start.host = node_address(required_env("SLURMD_NODENAME", "this runs as a Slurm step"));
  start.port = flags.port;
  start.jobmanager_port = flags.jobmanager_port;
  start.dashboard_port = flags.dashboard_port;
  start.node.num_cpus = 0;  // this node's worker is a step of its own
  return cluster_start(step, start);
}

int slurm_worker(const GlobalOptions& global, const SlurmFlags& flags) {
  const std::string node = required_env("SLURMD_NODENAME", "this runs as a Slurm step");
  GlobalOptions step = global;
  step.state_dir = step_state_dir(node);
  const RemovedAtExit cleanup(step.state_dir);
  StartFlags start;
  start.worker = true;
  start.foreground = true;
  start.head_address = flags.head_address;
  start.node.node_id = node;
  // The resources Slurm gave the job on this node.
  start.node.num_cpus = std::stod(env_or("SLURM_CPUS_ON_NODE", "1"));
  if (const std::string mb = env_or("SLURM_MEM_PER_NODE", ""); !mb.empty() && mb != "0") {
    start.node.memory = mb + "M";
  }
  start.node.num_gpus = std::stoi(env_or("SLURM_GPUS_ON_NODE", "0"));
  return cluster_start(step, start);
}

}  // namespace sage::cli
