// The `sage` command: starts and stops the processes of a cluster, shows its
// nodes, and lists, follows and stops its jobs.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include "cli/daemon.hpp"
#include "cluster/cluster_config.hpp"
#include "cluster/head.hpp"
#include "cluster/job_info.hpp"
#include "cluster/worker.hpp"
#include "net/rpc.hpp"
#include "sage.grpc.pb.h"
#include "sage/error.hpp"
#include "sage/options.hpp"

namespace sage::cli {
namespace {

// Exit codes: 1 for errors of the cluster or a job, 2 for bad command lines.
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

// Numbers of 0 or more (CLI::NonNegativeNumber's message names the largest double).
const CLI::Validator kNotNegative(
    [](std::string& text) -> std::string {
      double value = 0;
      const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (error == std::errc() && end == text.data() + text.size() && value >= 0 &&
          std::isfinite(value)) {
        return "";
      }
      return "must be a number of 0 or more, got '" + text + "'";
    },
    "NUMBER >= 0");

// Overwrites the value of --token in this process's arguments once they are
// parsed, so that /proc/<pid>/cmdline and `ps` no longer show it. The first
// `argc` arguments are sage's own (those after `job submit` are the program's).
void hide_token_argument(int argc, char** argv) {
  constexpr std::string_view kFlag = "--token";
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    char* value = nullptr;
    if (arg == kFlag && i + 1 < argc) {
      value = argv[++i];
    } else if (arg.starts_with(kFlag) && arg.size() > kFlag.size() && arg[kFlag.size()] == '=') {
      value = argv[i] + kFlag.size() + 1;
    }
    if (value != nullptr) std::memset(value, 'x', std::strlen(value));
  }
}

// Options every command shares.
struct Common {
  std::string state_dir;  // --state-dir, $SAGE_STATE_DIR, ~/.sage
  std::string address;    // the JobManager: --address, $SAGE_ADDRESS, the local head
  std::string token;      // --token, $SAGE_TOKEN, the token file
  std::string format = "table";
  net::TlsFiles tls;  // --tls-*, else $SAGE_TLS_*
};

// Resources of the node a worker runs on; 0 / -1 / "" take what the machine has.
struct NodeFlags {
  double num_cpus = -1;
  int num_gpus = -1;
  std::string memory;
  std::string node_id;
  std::string node_address;
};

struct StartFlags {
  bool head = false, worker = false, foreground = false;
  std::string host = "127.0.0.1";
  int port = cluster::kDefaultClusterPort;
  int jobmanager_port = cluster::kDefaultJobManagerPort;
  std::string head_address;
  NodeFlags node;
  int job_history = cluster::HeadOptions{}.job_history;
  std::string max_job_output;    // "" keeps the head's default
  std::string max_program_size;  // "" keeps the head's default
  int max_instances_per_job = cluster::HeadOptions{}.max_instances_per_job;
};

std::string log_dir(const std::string& state_dir) { return state_dir + "/logs"; }

std::string format_bytes(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, units[unit]);
}

std::string format_time(std::int64_t ms) {
  if (ms <= 0) return "-";
  const std::time_t seconds = ms / 1000;
  std::tm local{};
  localtime_r(&seconds, &local);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &local);
  return text;
}

std::string format_duration(const rpc::JobInfo& job) {
  if (job.submitted_at_ms() <= 0) return "-";
  const std::int64_t end = job.finished_at_ms() > 0 ? job.finished_at_ms() : cluster::now_ms();
  return fmt::format("{:.1f} s", static_cast<double>(end - job.submitted_at_ms()) / 1e3);
}

std::string to_json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

std::string hostname() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

// The local address this machine uses to reach `host`: the address peers on
// that network reach this node at.
std::string local_address_towards(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) {
    throw CLI::ValidationError("cannot resolve head address '" + host +
                               "'; pass --head-address=<ip>:<port>");
  }
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  std::string address = "127.0.0.1";
  if (fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0) {
    sockaddr_in local{};
    socklen_t length = sizeof local;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0) {
      char text[INET_ADDRSTRLEN];
      address = inet_ntop(AF_INET, &local.sin_addr, text, sizeof text);
    }
  }
  if (fd >= 0) ::close(fd);
  freeaddrinfo(found);
  return address;
}

// "host:port" split; a malformed one is a bad command line.
std::pair<std::string, int> split_address(const std::string& address, const std::string& flag) {
  const auto colon = address.rfind(':');
  int port = 0;
  if (colon != std::string::npos && colon > 0) {
    const char* end = address.data() + address.size();
    const auto [rest, error] = std::from_chars(address.data() + colon + 1, end, port);
    if (error != std::errc() || rest != end) port = 0;
  }
  if (port <= 0 || port > 65535) {
    throw CLI::ValidationError(flag + " '" + address + "' is not <host>:<port>; e.g. " + flag +
                               "=192.168.1.10:10001");
  }
  return {address.substr(0, colon), port};
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

// ---- cluster start -----------------------------------------------------------

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
void serve_head(const Common& common, const StartFlags& flags, const ReadyFn& ready) {
  // The token: --token, $SAGE_TOKEN, else the one this state directory's head
  // had before (so workers and clients keep working across a restart), else new.
  std::string token = common.token;
  if (token.empty()) {
    try {
      token = cluster::find_token(common.state_dir);
    } catch (const Error&) {
      token = cluster::new_token();
    }
  }
  cluster::HeadOptions options{flags.host,       flags.port, flags.jobmanager_port,
                               common.state_dir, token,      common.tls};
  options.job_history = flags.job_history;
  if (!flags.max_job_output.empty())
    options.max_job_output_bytes = parse_max_job_output(flags.max_job_output);
  if (!flags.max_program_size.empty())
    options.max_program_bytes = parse_max_program_size(flags.max_program_size);
  options.max_instances_per_job = flags.max_instances_per_job;
  cluster::write_token(cluster::token_path(common.state_dir), token);

  block_termination_signals();  // before the head's threads start
  common.tls.require_server();
  cluster::Head head(options);
  const bool wildcard = flags.host == "0.0.0.0" || flags.host == "::";
  const std::string reach = wildcard ? "127.0.0.1" : flags.host;
  const std::string jobmanager = reach + ":" + std::to_string(head.jobmanager_port());
  const std::string cluster_address = reach + ":" + std::to_string(head.cluster_port());
  {
    std::ofstream info(cluster::head_info_path(common.state_dir), std::ios::trunc);
    info << nlohmann::json{{"jobmanager", jobmanager},
                           {"cluster", cluster_address},
                           {"host", flags.host},
                           {"pid", getpid()}}
                .dump()
         << '\n';
  }
  std::string message = fmt::format(
      "sage head started (pid {})\n  JobManager: {}:{}   (clients, `sage job`, RemoteEnvironment)\n"
      "  cluster:    {}:{}   (workers: --head-address)\n  token file: {} (mode 0600; the "
      "workers and clients of this machine read it, others need its value in SAGE_TOKEN or a "
      "copy of the file in their state directory)\n",
      getpid(), flags.host, head.jobmanager_port(), flags.host, head.cluster_port(),
      cluster::token_path(common.state_dir));

  std::unique_ptr<cluster::Worker> worker;
  std::thread worker_thread;
  std::string worker_error;
  Once joined;  // "" once this node's worker joined, else why it could not
  if (flags.node.num_cpus != 0) {
    NodeFlags node = flags.node;
    if (node.node_id.empty()) node.node_id = "head";
    const std::string data_host =
        !node.node_address.empty() ? node.node_address
                                   : (wildcard ? local_address_towards("8.8.8.8", 53) : flags.host);
    auto options = worker_options(node, cluster_address, data_host, common.state_dir, token);
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
  const TerminationHandler on_signal([&] {
    if (worker) worker->stop();
    head.shutdown();
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
    if (on_signal.signalled()) return;  // stopped while it joined: not an error
    throw Error(worker_error);
  }
  message += "Stop it with: sage cluster stop";
  spdlog::info("{}", message);
  ready(message);
  head.wait();
  if (worker) worker->stop();
  if (worker_thread.joinable()) worker_thread.join();
  std::filesystem::remove(cluster::head_info_path(common.state_dir));
}

std::string worker_token(const Common& common) {
  return common.token.empty() ? cluster::find_token(common.state_dir) : common.token;
}

// REQUIRES: flags.node.node_address is set (cluster_start sets it).
void serve_worker(const Common& common, const StartFlags& flags, const ReadyFn& ready) {
  block_termination_signals();  // before the worker's threads start
  auto options = worker_options(flags.node, flags.head_address, flags.node.node_address,
                                common.state_dir, worker_token(common));
  const std::string description = describe_node(options);
  options.on_joined = [&] {
    ready("sage worker started (pid " + std::to_string(getpid()) + "): " + description +
          ", joined the head at " + flags.head_address);
  };
  cluster::Worker worker(options);
  const TerminationHandler on_signal([&] { worker.stop(); });
  worker.run();
}

int cluster_start(Common& common, StartFlags& flags) {
  if (flags.head == flags.worker) {
    throw CLI::ValidationError("sage cluster start: pass exactly one of --head or --worker");
  }
  if (flags.worker && flags.head_address.empty()) {
    throw CLI::ValidationError(
        "sage cluster start --worker needs --head-address=<head ip>:<port> (port 10001 unless "
        "the head was started with --port)");
  }
  // Checked before anything is written, so a bad flag leaves no trace.
  if (flags.worker) {
    const auto [head_host, head_port] = split_address(flags.head_address, "--head-address");
    if (flags.node.node_address.empty()) {
      flags.node.node_address = local_address_towards(head_host, head_port);
    }
  }
  if (!flags.node.memory.empty()) parse_memory(flags.node.memory);
  if (!flags.max_job_output.empty()) parse_max_job_output(flags.max_job_output);
  if (!flags.max_program_size.empty()) parse_max_program_size(flags.max_program_size);
  cluster::make_private_dir(common.state_dir);
  cluster::make_private_dir(log_dir(common.state_dir));
  if (flags.worker && flags.node.node_id.empty()) {
    std::random_device random;
    flags.node.node_id = fmt::format("{}-{:04x}", hostname(), random() & 0xffff);
  }
  const std::string name = flags.head ? "head" : "worker-" + flags.node.node_id;
  const auto serve = [&](const ReadyFn& ready) {
    if (flags.head) {
      serve_head(common, flags, ready);
    } else {
      serve_worker(common, flags, ready);
    }
  };
  if (flags.foreground) {
    bool announced = false;
    serve([&](const std::string& message) {
      if (!std::exchange(announced, true)) std::cout << message << std::endl;
    });
    return 0;
  }
  const std::string log = log_dir(common.state_dir) + "/" + name + ".log";
  std::cout << start_daemon(common.state_dir + "/" + name + ".pid", log, serve) << "\n"
            << "  log: " << log << std::endl;
  return 0;
}

// ---- talking to the JobManager -------------------------------------------------

class JobManagerClient {
 public:
  explicit JobManagerClient(const Common& common)
      : address_(common.address),
        token_(common.token),
        stub_(rpc::JobManager::NewStub(net::make_channel(address_))) {
    // Without a token the call still goes out: "no head answers" is the
    // better message when there is no head, the token error when there is.
    if (token_.empty()) {
      try {
        token_ = cluster::find_token(common.state_dir);
      } catch (const Error& e) {
        token_error_ = e.what();
      }
    }
  }

  template <class Request, class Reply, class Call>
  Reply call(const std::string& what, Call method, const Request& request) {
    Reply reply;
    auto context = net::make_context(token_);
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    const grpc::Status status = ((*stub_).*method)(context.get(), request, &reply);
    if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED && !token_error_.empty()) {
      throw Error(what + " at " + address_ + ": " + token_error_);
    }
    if (!status.ok()) throw Error(net::describe(status, what, address_));
    return reply;
  }

  rpc::JobInfo job(const std::string& id) {
    rpc::JobRef ref;
    ref.set_job_id(id);
    return call<rpc::JobRef, rpc::JobInfo>("cannot get job " + id, &rpc::JobManager::Stub::GetJob,
                                           ref);
  }

  // Prints the job's output lines (following it until it ends with `follow`);
  // returns its state at the end.
  rpc::JobInfo watch(const std::string& id, bool follow) {
    rpc::WatchRequest request;
    request.set_job_id(id);
    request.set_follow(follow);
    auto context = net::make_context(token_);
    auto reader = stub_->WatchJob(context.get(), request);
    rpc::JobEvent event;
    rpc::JobInfo state;
    while (reader->Read(&event)) {
      if (event.has_output_line()) {
        std::cout << event.output_line() << '\n';
        if (follow) std::cout.flush();  // a follower sees each line as it comes
      } else {
        state = event.state();
      }
    }
    std::cout.flush();
    const grpc::Status status = reader->Finish();
    if (!status.ok()) throw Error(net::describe(status, "cannot read the logs of " + id, address_));
    return state;
  }

  rpc::JobManager::Stub& stub() { return *stub_; }

 private:
  std::string address_;
  std::string token_;
  std::string token_error_;  // why no token was found, if none was
  std::unique_ptr<rpc::JobManager::Stub> stub_;
};

std::string resources_cell(double used, double total) {
  return fmt::format("{:g}/{:g}", used, total);
}

int cluster_status(const Common& common) {
  JobManagerClient client(common);
  const auto info = client.call<rpc::Empty, rpc::ClusterInfo>(
      "cannot get the cluster status", &rpc::JobManager::Stub::ClusterStatus, rpc::Empty());
  if (common.format == "json") {
    std::cout << to_json(info) << std::endl;
    return 0;
  }
  std::cout << fmt::format("{:<22} {:<16} {:<6} {:>9} {:>6} {:>22} {:>10}\n", "NODE", "ADDRESS",
                           "STATE", "CPUS", "GPUS", "MEMORY", "HEARTBEAT");
  int alive = 0;
  for (const auto& node : info.nodes()) {
    alive += node.alive();
    const double ago = static_cast<double>(cluster::now_ms() - node.last_heartbeat_ms()) / 1e3;
    std::cout << fmt::format(
        "{:<22} {:<16} {:<6} {:>9} {:>6} {:>22} {:>10}\n", node.node_id(), node.address(),
        node.alive() ? "alive" : "dead",
        resources_cell(node.used().num_cpus(), node.total().num_cpus()),
        fmt::format("{}/{}", node.used().num_gpus(), node.total().num_gpus()),
        format_bytes(node.used().memory_bytes()) + "/" + format_bytes(node.total().memory_bytes()),
        fmt::format("{:.1f} s ago", ago));
  }
  std::cout << fmt::format("{} node{} ({} alive), {} job{} running or pending, JobManager at {}\n",
                           info.nodes_size(), info.nodes_size() == 1 ? "" : "s", alive,
                           info.running_jobs_size(), info.running_jobs_size() == 1 ? "" : "s",
                           common.address);
  return 0;
}

int cluster_stop(const Common& common) {
  namespace fs = std::filesystem;
  int stopped = 0, failed = 0;
  std::error_code error;
  std::vector<fs::path> pid_files;
  for (const auto& entry : fs::directory_iterator(common.state_dir, error)) {
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
                  << "killed while stopping; see its log " << log_dir(common.state_dir) << "/"
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
    std::cout << "no sage head or worker of " << common.state_dir << " is running\n";
  }
  fs::remove(cluster::head_info_path(common.state_dir), error);
  return failed == 0 ? 0 : kExitError;
}

// ---- job commands ----------------------------------------------------------------

int job_list(const Common& common) {
  JobManagerClient client(common);
  const auto list = client.call<rpc::Empty, rpc::JobList>(
      "cannot list jobs", &rpc::JobManager::Stub::ListJobs, rpc::Empty());
  if (common.format == "json") {
    std::cout << to_json(list) << std::endl;
    return 0;
  }
  std::size_t name_width = 4;
  for (const auto& job : list.jobs()) name_width = std::max(name_width, job.name().size());
  std::cout << fmt::format("{:<18} {:<{}} {:<9} {:<20} {:>10}  {}\n", "JOB", "NAME", name_width,
                           "STATE", "SUBMITTED", "DURATION", "NODES");
  for (const auto& job : list.jobs()) {
    std::string nodes;
    for (const auto& node : job.nodes()) nodes += (nodes.empty() ? "" : ",") + node;
    std::cout << fmt::format("{:<18} {:<{}} {:<9} {:<20} {:>10}  {}\n", job.job_id(), job.name(),
                             name_width, rpc::JobInfo::State_Name(job.state()),
                             format_time(job.submitted_at_ms()), format_duration(job),
                             nodes.empty() ? "-" : nodes);
  }
  if (list.jobs().empty()) std::cout << "(no jobs yet)\n";
  return 0;
}

// The instances of a running job: where each runs, whether it still does,
// and over the last second its rates, the share of the time it waited for
// room downstream, and its input queue now.
std::string live_statistics_table(const rpc::JobInfo& job) {
  std::size_t name_width = 8, node_width = 4;
  for (const auto& s : job.instances()) {
    name_width = std::max(name_width, s.operator_name().size() + 6);
    node_width = std::max(node_width, s.node_id().size());
  }
  std::string table =
      fmt::format("{:<{}}  {:<{}}  {:>8}  {:<7}  {:>12}  {:>12}  {:>10}  {:>10}  {:>12}  {:>9}\n",
                  "INSTANCE", name_width, "NODE", node_width, "PID", "STATE", "RECORDS_IN",
                  "RECORDS_OUT", "IN/S", "OUT/S", "BACKPRESSURE", "QUEUE");
  for (const auto& s : job.instances()) {
    const std::string queue =
        s.queue_capacity_batches() == 0
            ? "-"
            : fmt::format("{}/{}", s.queue_batches(), s.queue_capacity_batches());
    table += fmt::format(
        "{:<{}}  {:<{}}  {:>8}  {:<7}  {:>12}  {:>12}  {:>10.4g}  {:>10.4g}  {:>11.0f}%  {:>9}\n",
        fmt::format("{}[{}/{}]", s.operator_name(), s.parallel_index(), s.parallelism()),
        name_width, s.node_id(), node_width, s.process_id(), s.running() ? "running" : "ended",
        s.records_in(), s.records_out(), s.records_in_per_second(), s.records_out_per_second(),
        s.backpressure() * 100, queue);
  }
  return table;
}

void print_job(const rpc::JobInfo& job) {
  std::string nodes;
  for (const auto& node : job.nodes()) nodes += (nodes.empty() ? "" : ", ") + node;
  std::cout << fmt::format("job:       {} ({})\nstate:     {}\n", job.job_id(), job.name(),
                           rpc::JobInfo::State_Name(job.state()));
  if (!job.pending_reason().empty()) std::cout << "waiting:   " << job.pending_reason() << '\n';
  if (!job.error().empty()) std::cout << "error:     " << job.error() << '\n';
  std::cout << fmt::format("submitted: {}\nstarted:   {}\nfinished:  {}\nduration:  {}\n",
                           format_time(job.submitted_at_ms()), format_time(job.started_at_ms()),
                           format_time(job.finished_at_ms()), format_duration(job));
  if (!nodes.empty()) std::cout << "nodes:     " << nodes << '\n';
  if (job.instances_size() > 0 && job.state() == rpc::JobInfo::RUNNING) {
    std::cout << '\n' << live_statistics_table(job);
    const std::string metrics = cluster::to_job_result(job).user_metrics_table();
    if (!metrics.empty()) std::cout << '\n' << metrics;
  } else if (job.instances_size() > 0) {
    std::cout << '\n' << cluster::to_job_result(job).statistics_table();
  }
}

int job_status(const Common& common, const std::string& id) {
  JobManagerClient client(common);
  const auto job = client.job(id);
  if (common.format == "json") {
    std::cout << to_json(job) << std::endl;
  } else {
    print_job(job);
  }
  return 0;
}

int job_logs(const Common& common, const std::string& id, bool follow) {
  JobManagerClient client(common);
  client.job(id);  // a clear error for an unknown id
  client.watch(id, follow);
  return 0;
}

int job_stop(const Common& common, const std::string& id) {
  JobManagerClient client(common);
  rpc::JobRef ref;
  ref.set_job_id(id);
  auto job = client.call<rpc::JobRef, rpc::JobInfo>("cannot stop job " + id,
                                                    &rpc::JobManager::Stub::StopJob, ref);
  // Wait until every node has ended the job's processes.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!cluster::is_final(job.state())) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw Error("job " + id + " is still " + rpc::JobInfo::State_Name(job.state()) +
                  " 30 s after the stop; see `sage job status " + id + "`");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    job = client.job(id);
  }
  if (common.format == "json") {
    std::cout << to_json(job) << std::endl;
  } else {
    std::cout << "job " << id << " is " << rpc::JobInfo::State_Name(job.state())
              << (job.error().empty() ? "" : ": " + job.error()) << '\n';
  }
  return 0;
}

// The program `sage job submit` runs, while it runs: signals sent to this
// command go to it (those of the terminal reach both already).
volatile sig_atomic_t submitting_program = 0;

void pass_signal_on(int signal, siginfo_t* info, void*) {
  if (info->si_code <= 0 && submitting_program > 0) ::kill(submitting_program, signal);
}

// An empty file of this user's, removed with this object.
class TemporaryFile {
 public:
  TemporaryFile() {
    path_ = (std::filesystem::temp_directory_path() / "sage-submit-XXXXXX").string();
    const int fd = mkostemp(path_.data(), O_CLOEXEC);
    if (fd < 0) throw Error("cannot create a file in " + path_ + ": " + std::strerror(errno));
    ::close(fd);
  }
  ~TemporaryFile() { ::unlink(path_.c_str()); }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs the program with the cluster's address and token in its environment,
// so that its RemoteEnvironment submits to this cluster. Returns its exit
// code; a program that ends without submitting a job is an error.
int job_submit(const Common& common, const std::vector<std::string>& command) {
  if (command.empty()) {
    throw CLI::ValidationError(
        "sage job submit needs a program: sage job submit ./my_job [args...]");
  }
  setenv("SAGE_ADDRESS", common.address.c_str(), 1);
  const std::string token =
      common.token.empty() ? cluster::find_token(common.state_dir) : common.token;
  setenv("SAGE_TOKEN", token.c_str(), 1);
  setenv("SAGE_STATE_DIR", common.state_dir.c_str(), 1);
  const TemporaryFile submitted;
  setenv(cluster::kSubmittedJobsVariable, submitted.path().c_str(), 1);

  constexpr int kPassedOn[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  sigset_t passed_on;
  sigemptyset(&passed_on);
  for (int signal : kPassedOn) sigaddset(&passed_on, signal);
  sigset_t before;
  pthread_sigmask(SIG_BLOCK, &passed_on, &before);  // until the handler knows the program
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setsigmask(&attributes, &before);
  std::vector<char*> argv;
  std::vector<std::string> args = command;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, argv[0], nullptr, &attributes, argv.data(), environ);
  posix_spawnattr_destroy(&attributes);
  if (spawned != 0) {
    pthread_sigmask(SIG_SETMASK, &before, nullptr);
    throw Error("cannot run '" + command[0] + "': " + std::strerror(spawned) +
                "; pass the path of a program built with sage");
  }
  submitting_program = pid;
  struct sigaction action {};
  action.sa_sigaction = pass_signal_on;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&action.sa_mask);
  for (int signal : kPassedOn) sigaction(signal, &action, nullptr);
  pthread_sigmask(SIG_SETMASK, &before, nullptr);

  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  submitting_program = 0;
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream jobs(submitted.path());
  std::string job_id;
  if (jobs >> job_id) return code;
  std::cerr << "sage: error: " << command[0] << " ended ("
            << (WIFEXITED(status) ? "exit code " + std::to_string(code)
                                  : std::string("signal ") + strsignal(WTERMSIG(status)))
            << ") without submitting a job; a program run by `sage job submit` submits "
               "its dataflow with sage::RemoteEnvironment (execute() or submit())"
            << std::endl;
  return code != 0 ? code : kExitError;
}

// The JobManager address when none is given: the head of this state directory.
std::string default_address(const std::string& state_dir) {
  if (const char* env = std::getenv("SAGE_ADDRESS"); env != nullptr && *env != '\0') return env;
  const std::string local = cluster::local_jobmanager_address(state_dir);
  return !local.empty() ? local : "127.0.0.1:" + std::to_string(cluster::kDefaultJobManagerPort);
}

int run(int argc, char** argv) {
  CLI::App app{"sage: a distributed stream processing engine. Starts clusters and manages jobs.",
               "sage"};
  app.set_version_flag("--version", std::string("sage ") + SAGE_VERSION);
  app.require_subcommand(1);
  app.fallthrough();
  Common common;
  app.add_option("--state-dir", common.state_dir,
                 "Where pid, log and token files live (default $SAGE_STATE_DIR, else ~/.sage)");
  app.add_option("--address", common.address,
                 "JobManager host:port (default $SAGE_ADDRESS, else the head started from this "
                 "state directory, else 127.0.0.1:19001)");
  app.add_option("--token", common.token,
                 "Cluster token (default $SAGE_TOKEN, else the token file in the state directory; "
                 "prefer those: sage blanks this flag's value in its process list entry, but "
                 "other users may see it before that)");
  app.add_option("--tls-cert", common.tls.cert,
                 "This node's TLS certificate, PEM (head and workers; default $SAGE_TLS_CERT)");
  app.add_option("--tls-key", common.tls.key, "Its private key, PEM (default $SAGE_TLS_KEY)");
  app.add_option("--tls-ca", common.tls.ca,
                 "The CA that signed every node's certificate: turns TLS on for the control and "
                 "data planes (default $SAGE_TLS_CA)");
  app.add_option("--format", common.format, "Output format")
      ->check(CLI::IsMember({"table", "json"}));

  auto* cluster = app.add_subcommand("cluster", "Start, stop and inspect a cluster");
  cluster->require_subcommand(1);
  StartFlags start;
  auto* start_cmd = cluster->add_subcommand("start", "Start a head or a worker on this machine");
  auto* head_flag = start_cmd->add_flag("--head", start.head,
                                        "Start the head (JobManager, scheduler) and a worker");
  auto* worker_flag =
      start_cmd->add_flag("--worker", start.worker, "Start a worker that joins --head-address");
  start_cmd
      ->add_option("--host", start.host,
                   "Head: address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
      ->excludes(worker_flag);
  start_cmd->add_option("--port", start.port, "Head: port workers join (default 10001; 0: any)")
      ->check(CLI::Range(0, 65535))
      ->excludes(worker_flag);
  start_cmd
      ->add_option("--jobmanager-port", start.jobmanager_port,
                   "Head: port clients submit to (default 19001; 0: any)")
      ->check(CLI::Range(0, 65535))
      ->excludes(worker_flag);
  start_cmd->add_option("--head-address", start.head_address, "Worker: the head's <ip>:<port>")
      ->excludes(head_flag);
  start_cmd
      ->add_option("--num-cpus", start.node.num_cpus,
                   "CPUs this node offers (default: its cores; 0 on a head: no worker there)")
      ->check(kNotNegative);
  start_cmd->add_option("--num-gpus", start.node.num_gpus, "GPUs this node offers (default: found)")
      ->check(kNotNegative);
  start_cmd->add_option("--memory", start.node.memory,
                        "Memory this node offers, e.g. 16GB (default: its RAM)");
  start_cmd->add_option("--node-id", start.node.node_id,
                        "Name of this node (default: 'head', or <hostname>-<random> for workers)");
  start_cmd->add_option("--node-address", start.node.node_address,
                        "Address other nodes reach this node's task processes at (default: the "
                        "local address that routes to the head)");
  start_cmd
      ->add_option("--job-history", start.job_history,
                   "Head: ended jobs kept, with their output (default 1000; older ones go)")
      ->check(CLI::Range(1, 100'000'000))
      ->excludes(worker_flag);
  start_cmd
      ->add_option("--max-job-output", start.max_job_output,
                   "Head: output kept per job (default 64MB; its oldest lines go first)")
      ->excludes(worker_flag);
  start_cmd
      ->add_option("--max-program-size", start.max_program_size,
                   "Head: largest program a job may upload (default 1GiB)")
      ->excludes(worker_flag);
  start_cmd
      ->add_option("--max-instances-per-job", start.max_instances_per_job,
                   "Head: operator instances one job may have, all operators together (default "
                   "4096)")
      ->check(CLI::Range(1, cluster::kMaxInstancesPerJobLimit))
      ->excludes(worker_flag);
  start_cmd->add_flag("--foreground", start.foreground,
                      "Stay in the foreground, logging to the terminal (systemd, containers)");
  auto* status_cmd = cluster->add_subcommand("status", "Nodes, their resources, running jobs");
  auto* stop_cmd =
      cluster->add_subcommand("stop", "Stop the head and workers of this state directory");

  auto* job = app.add_subcommand("job", "List, inspect, follow, stop and submit jobs");
  job->require_subcommand(1);
  std::string job_id;
  bool follow = false;
  auto* list_cmd = job->add_subcommand("list", "All jobs, newest first");
  auto* job_status_cmd = job->add_subcommand("status", "State, error and statistics of a job");
  job_status_cmd->add_option("job_id", job_id, "Job id (see `sage job list`)")->required();
  auto* logs_cmd = job->add_subcommand("logs", "Output of a job's task processes");
  logs_cmd->add_option("job_id", job_id, "Job id")->required();
  logs_cmd->add_flag("-f,--follow", follow, "Keep printing until the job ends");
  auto* job_stop_cmd = job->add_subcommand("stop", "Stop a job and its processes on every node");
  job_stop_cmd->add_option("job_id", job_id, "Job id")->required();
  auto* submit_cmd = job->add_subcommand(
      "submit",
      "Run a program (and its arguments) whose RemoteEnvironment submits to this cluster: "
      "sage [options] job submit ./my_job [args...]; everything after `submit` goes to the "
      "program");
  // What follows `job submit` is the program and its own arguments, passed on
  // untouched (CLI11 would parse their --flags as sage's).
  std::vector<std::string> submitted;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "job" && std::string(argv[i + 1]) == "submit") {
      int first = i + 2;
      if (first < argc && std::string(argv[first]) == "--") {
        ++first;  // `sage job submit -- --help` runs a program named --help
      } else if (first < argc &&
                 (std::string(argv[first]) == "--help" || std::string(argv[first]) == "-h")) {
        break;  // sage's help for `job submit`
      }
      submitted.assign(argv + first, argv + argc);
      argc = i + 2;
      break;
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;  // --help and --version exit 0
  }
  hide_token_argument(argc, argv);
  if (common.state_dir.empty()) common.state_dir = cluster::default_state_dir();
  // Flags over the environment; exported for the threads, daemons and
  // programs this command starts.
  const net::TlsFiles from_environment = net::TlsFiles::from_environment();
  if (common.tls.cert.empty()) common.tls.cert = from_environment.cert;
  if (common.tls.key.empty()) common.tls.key = from_environment.key;
  if (common.tls.ca.empty()) common.tls.ca = from_environment.ca;
  for (std::string* path : {&common.tls.cert, &common.tls.key, &common.tls.ca}) {
    if (!path->empty()) *path = std::filesystem::absolute(*path).string();  // task processes chdir
  }
  if (common.address.empty()) common.address = default_address(common.state_dir);

  try {
    common.tls.export_to_environment();
    if (*start_cmd) return cluster_start(common, start);
    if (*status_cmd) return cluster_status(common);
    if (*stop_cmd) return cluster_stop(common);
    if (*list_cmd) return job_list(common);
    if (*job_status_cmd) return job_status(common, job_id);
    if (*logs_cmd) return job_logs(common, job_id, follow);
    if (*job_stop_cmd) return job_stop(common, job_id);
    if (*submit_cmd) return job_submit(common, submitted);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "sage: error: " << e.what() << std::endl;
    return kExitError;
  }
  return kExitError;
}

}  // namespace
}  // namespace sage::cli

int main(int argc, char** argv) { return sage::cli::run(argc, argv); }
