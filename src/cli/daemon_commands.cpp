#include "cli/daemon_commands.hpp"

#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "cli/daemon.hpp"
#include "cli/output_format.hpp"
#include "cluster/request_validation.hpp"
#include "cluster/worker.hpp"
#include "net/socket.hpp"
#include "sage/error.hpp"
#include "sage/options.hpp"

namespace sage::cli {
namespace {

std::string log_dir(const std::string& state_dir) { return state_dir + "/logs"; }

std::string hostname() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

std::uint64_t parse_memory(const std::string& text) {
  return parse_memory_amount(text, "--memory");
}
std::uint64_t parse_max_job_output(const std::string& text) {
  return parse_memory_amount(text, "--max-job-output");
}
std::uint64_t parse_max_program_size(const std::string& text) {
  return parse_memory_amount(text, "--max-program-size");
}

cluster::WorkerOptions worker_options(const NodeFlags& node, const std::string& head_address,
                                      const std::string& data_host, const std::string& state_dir,
                                      const std::string& token) {
  cluster::WorkerOptions options;
  options.head_address = head_address;
  options.node_id = node.node_id;
  options.host = data_host;
  options.num_cpus = node.num_cpus < 0 ? 0 : node.num_cpus;
  options.num_gpus = node.num_gpus;
  options.memory_bytes = node.memory.empty() ? 0 : parse_memory(node.memory);
  options.state_dir = state_dir;
  options.token = token;
  options.tls = net::TlsFiles::from_environment();
  options.tls.require_server();  // its task processes serve the data plane
  return options;
}

std::string describe_node(const cluster::WorkerOptions& o) {
  return fmt::format("node '{}' ({} CPUs, {} GPUs, {} memory; data plane on {})", o.node_id,
                     o.num_cpus > 0 ? fmt::format("{:g}", o.num_cpus) : "all",
                     o.num_gpus >= 0 ? std::to_string(o.num_gpus) : "all",
                     o.memory_bytes > 0 ? format_bytes(o.memory_bytes) : "all", o.host);
}

// A message delivered once, by whichever thread has one first.
class Once {
 public:
  void set(const std::string& message) {
    std::call_once(flag_, [&] { promise_.set_value(message); });
  }
  std::string get() { return future_.get(); }

 private:
  std::once_flag flag_;
  std::promise<std::string> promise_;
  std::future<std::string> future_ = promise_.get_future();
};

// The head process: JobManager and cluster service, and (unless --num-cpus 0)
// a worker for this node, until SIGTERM/SIGINT.
void serve_head(const GlobalOptions& global, const StartFlags& flags, const ReadyFn& ready) {
  // The token: --token, $SAGE_TOKEN, else the one this state directory's head
  // had before (so workers and clients keep working across a restart), else new.
  std::string token = global.token;
  if (token.empty()) {
    // One that is given but cannot be a token is an error, not replaced.
    const char* given = std::getenv("SAGE_TOKEN");
    std::error_code error;
    const auto file_bytes =
        std::filesystem::file_size(cluster::token_path(global.state_dir), error);
    const bool had_one = (given != nullptr && *given != '\0') || (!error && file_bytes > 0);
    token = had_one ? cluster::find_token(global.state_dir) : cluster::new_token();
  }
  cluster::HeadOptions options{flags.host,       flags.port, flags.jobmanager_port,
                               global.state_dir, token,      global.tls};
  options.job_history = flags.job_history;
  if (!flags.max_job_output.empty())
    options.max_job_output_bytes = parse_max_job_output(flags.max_job_output);
  if (!flags.max_program_size.empty())
    options.max_program_bytes = parse_max_program_size(flags.max_program_size);
  options.max_instances_per_job = flags.max_instances_per_job;
  options.dashboard_port = flags.dashboard_port;
  cluster::write_token(cluster::token_path(global.state_dir), token);

  block_termination_signals();  // before the head's threads start
  global.tls.require_server();
  cluster::Head head(options);
  const bool wildcard = flags.host == "0.0.0.0" || flags.host == "::";
  const std::string reach = wildcard ? "127.0.0.1" : flags.host;
  const std::string jobmanager = reach + ":" + std::to_string(head.jobmanager_port());
  const std::string cluster_address = reach + ":" + std::to_string(head.cluster_port());
  const std::string dashboard = std::string(global.tls.enabled() ? "https://" : "http://") + reach +
                                ":" + std::to_string(head.dashboard_port());
  {
    // Renamed into place, so that a client never reads half of it.
    const std::string path = cluster::head_info_path(global.state_dir);
    std::ofstream(path + ".new", std::ios::trunc) << nlohmann::json{{"jobmanager", jobmanager},
                                                                    {"cluster", cluster_address},
                                                                    {"dashboard", dashboard},
                                                                    {"host", flags.host},
                                                                    {"pid", getpid()}}
                                                         .dump()
                                                  << '\n';
    std::filesystem::rename(path + ".new", path);
  }
  std::string message = fmt::format(
      "sage head started (pid {})\n  JobManager: {}:{}   (clients, `sage job`, RemoteEnvironment)\n"
      "  cluster:    {}:{}   (workers: --head-address)\n  dashboard:  {}   (/metrics, "
      "/api/v1; `sage dashboard` prints its URL with the token)\n  token file: {} (mode 0600; "
      "the workers and clients of this machine read it, others need its value in SAGE_TOKEN or "
      "a copy of the file in their state directory)\n",
      getpid(), flags.host, head.jobmanager_port(), flags.host, head.cluster_port(), dashboard,
      cluster::token_path(global.state_dir));

  std::unique_ptr<cluster::Worker> worker;
  std::thread worker_thread;
  std::string worker_error;
  Once joined;  // "" once this node's worker joined, else why it could not
  if (flags.node.num_cpus != 0) {
    NodeFlags node = flags.node;
    if (node.node_id.empty()) node.node_id = "head";
    const std::string data_host =
        !node.node_address.empty()
            ? node.node_address
            : (wildcard ? net::local_address_towards({"8.8.8.8", 53}) : flags.host);
    auto options = worker_options(node, cluster_address, data_host, global.state_dir, token);
    message += "  this node:  " + describe_node(options) + "\n";
    if (wildcard && node.node_address.empty() && data_host.starts_with("127.")) {
      message += "  warning:    this machine has no default route, so its data plane is on " +
                 data_host +
                 ", which other machines cannot reach; pass --node-address=<its IP> for a "
                 "cluster of several machines\n";
    }
    options.on_joined = [&joined] { joined.set(""); };
    worker = std::make_unique<cluster::Worker>(options);
  }
  // Declared after the head and the worker, so that it is gone before them.
  // The head goes first: a job whose instances the node's own worker then
  // ends is one the head stopped serving (FAILED when it restarts), not one
  // that failed while it watched.
  const TerminationHandler on_signal([&] {
    head.shutdown();
    if (worker) worker->stop();
  });
  if (worker) {
    worker_thread = std::thread([&] {
      try {
        worker->run();
      } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        joined.set(e.what());
        head.shutdown();
      }
      joined.set("the worker of the head node stopped before it joined");
    });
    worker_error = joined.get();
  }
  if (!worker_error.empty()) {
    worker_thread.join();
    // The head ends with its node: clients must not dial its ports.
    std::filesystem::remove(cluster::head_info_path(global.state_dir));
    if (on_signal.signalled()) return;  // stopped while it joined: not an error
    throw Error(worker_error);
  }
  message += "Stop it with: sage cluster stop";
  spdlog::info("{}", message);
  ready(message);
  head.wait();
  if (worker) worker->stop();
  if (worker_thread.joinable()) worker_thread.join();
  std::filesystem::remove(cluster::head_info_path(global.state_dir));
}

// REQUIRES: flags.node.node_address is set (cluster_start sets it).
void serve_worker(const GlobalOptions& global, const StartFlags& flags, const ReadyFn& ready) {
  block_termination_signals();  // before the worker's threads start
  auto options = worker_options(flags.node, flags.head_address, flags.node.node_address,
                                global.state_dir, global.cluster_token());
  const std::string description = describe_node(options);
  options.on_joined = [&] {
    ready("sage worker started (pid " + std::to_string(getpid()) + "): " + description +
          ", joined the head at " + flags.head_address);
  };
  cluster::Worker worker(options);
  const TerminationHandler on_signal([&] { worker.stop(); });
  worker.run();
}

// A --head-address that is not <host>:<port> is a bad command line, with a
// message that names the flag and shows one that is (Address::parse's names
// neither, and takes port 0, which a worker cannot join).
net::Address parse_head_address(const std::string& text) {
  try {
    const auto address = net::Address::parse(text);
    if (address.port > 0) return address;
  } catch (const Error&) {
  }
  throw CLI::ValidationError("--head-address '" + text +
                             "' is not <host>:<port>; e.g. --head-address=192.168.1.10:10001");
}

// The address this worker's data plane is reached at: the local one that
// routes to the head. A head that does not resolve is a bad command line.
std::string address_towards_head(const net::Address& head) {
  try {
    return net::local_address_towards(head);
  } catch (const Error&) {
    throw CLI::ValidationError("cannot resolve head address '" + head.host +
                               "'; pass --head-address=<ip>:<port>");
  }
}

}  // namespace

int cluster_start(const GlobalOptions& global, StartFlags& flags) {
  if (flags.head == flags.worker) {
    throw CLI::ValidationError("sage cluster start: pass exactly one of --head or --worker");
  }
  if (flags.worker && flags.head_address.empty()) {
    throw CLI::ValidationError(
        "sage cluster start --worker needs --head-address=<head ip>:<port> (port 10001 unless "
        "the head was started with --port)");
  }
  // Checked before anything is written, so a bad flag leaves no trace.
  if (!flags.node.node_id.empty()) {
    // It names the pid and log files, so it is checked here as the head would.
    if (auto problem = cluster::problem_in_node_id("--node-id", flags.node.node_id)) {
      throw CLI::ValidationError(*problem);
    }
  }
  if (flags.worker) {
    const net::Address head = parse_head_address(flags.head_address);
    if (flags.node.node_address.empty()) flags.node.node_address = address_towards_head(head);
  }
  try {
    if (!flags.node.memory.empty()) parse_memory(flags.node.memory);
    if (!flags.max_job_output.empty()) parse_max_job_output(flags.max_job_output);
    if (!flags.max_program_size.empty()) parse_max_program_size(flags.max_program_size);
  } catch (const Error& e) {
    throw CLI::ValidationError(e.what());  // a bad command line: exit 2
  }
  cluster::make_private_dir(global.state_dir);
  cluster::make_private_dir(log_dir(global.state_dir));
  if (flags.worker && flags.node.node_id.empty()) {
    std::random_device random;
    flags.node.node_id = fmt::format("{}-{:04x}", hostname(), random() & 0xffff);
  }
  const std::string name = flags.head ? "head" : "worker-" + flags.node.node_id;
  const auto serve = [&](const ReadyFn& ready) {
    if (flags.head) {
      serve_head(global, flags, ready);
    } else {
      serve_worker(global, flags, ready);
    }
  };
  const std::string pid_path = global.state_dir + "/" + name + ".pid";
  if (flags.foreground) {
    // Held like a daemon's: `sage cluster stop` finds it, and no second head or
    // worker of the same name starts on this state directory meanwhile.
    const PidFile pid_file(pid_path);
    bool announced = false;
    serve([&](const std::string& message) {
      if (!std::exchange(announced, true)) std::cout << message << std::endl;
    });
    return 0;
  }
  const std::string log = log_dir(global.state_dir) + "/" + name + ".log";
  std::cout << start_daemon(pid_path, log, serve) << "\n"
            << "  log: " << log << std::endl;
  return 0;
}

int cluster_stop(const GlobalOptions& global) {
  namespace fs = std::filesystem;
  int stopped = 0, failed = 0;
  std::error_code error;
  std::vector<fs::path> pid_files;
  for (const auto& entry : fs::directory_iterator(global.state_dir, error)) {
    if (entry.path().extension() == ".pid") pid_files.push_back(entry.path());
  }
  // Workers first, so that they do not try to rejoin a head that is going.
  std::sort(pid_files.begin(), pid_files.end(), [](const fs::path& a, const fs::path& b) {
    return (a.stem() == "head") < (b.stem() == "head");
  });
  for (const auto& path : pid_files) {
    const int pid = running_pid(path.string());
    if (pid != 0) {
      const bool in_time = terminate(pid, 10);
      const std::string name = path.stem().string();
      if (!in_time) {
        std::cout << "stopped " << name << " (pid " << pid << ") with SIGKILL after 10 s\n";
      } else if (fs::exists(path)) {
        // A daemon removes its pid file as it returns from serving; one that
        // is left behind belongs to a process that crashed or was killed.
        std::cout << name << " (pid " << pid << ") did not stop cleanly: it crashed or was "
                  << "killed while stopping; see its log " << log_dir(global.state_dir) << "/"
                  << name << ".log\n";
        ++failed;
      } else {
        std::cout << "stopped " << name << " (pid " << pid << ")\n";
      }
      ++stopped;
    }
    fs::remove(path, error);
  }
  if (stopped == 0) {
    std::cout << "no sage head or worker of " << global.state_dir << " is running\n";
  }
  fs::remove(cluster::head_info_path(global.state_dir), error);
  return failed == 0 ? 0 : kExitError;
}

}  // namespace sage::cli
