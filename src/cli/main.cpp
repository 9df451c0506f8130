// The `sage` command: the wiring of its flags and subcommands to the command
// groups (daemon_commands: cluster start/stop; cluster_commands: cluster
// status; job_commands: job ...; slurm_commands: slurm ...), and the
// resolution of the shared options.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string_view>

#include "cli/cluster_commands.hpp"
#include "cli/daemon_commands.hpp"
#include "cli/global_options.hpp"
#include "cli/job_commands.hpp"
#include "cli/slurm_commands.hpp"
#include "cluster/cluster_config.hpp"
#include "cluster/jobmanager_client.hpp"
#include "cluster/request_validation.hpp"
#include "net/rpc.hpp"
#include "net/socket.hpp"
#include "sage/error.hpp"

namespace sage::cli {
namespace {

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

// Numbers up to `max` (after kNotNegative), as the head refuses larger ones
// when the node joins.
CLI::Validator at_most(double max) {
  return CLI::Validator(
      [max](std::string& text) -> std::string {
        if (std::stod(text) <= max) return "";
        return "at most " + std::to_string(static_cast<long long>(max)) + ", got '" + text + "'";
      },
      "NUMBER <= " + std::to_string(static_cast<long long>(max)));
}

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

// `sage slurm submit|run [sage flags] [sbatch options] -- ./program [args]`:
// takes the program (after --) and, for submit, the options that are not
// sage's (sbatch's) out of the arguments CLI11 parses. `argc` shrinks.
void split_slurm_arguments(int& argc, char** argv, std::vector<std::string>& sbatch_options,
                           std::vector<std::string>& program) {
  int first = 0;
  for (int i = 1; i + 1 < argc && first == 0; ++i) {
    const std::string_view command = argv[i + 1];
    if (std::string_view(argv[i]) == "slurm" && (command == "submit" || command == "run")) {
      first = i + 2;
    }
  }
  if (first == 0) return;
  const bool submit = std::string_view(argv[first - 1]) == "submit";
  int kept = first;
  int i = first;
  for (; i < argc && std::string_view(argv[i]) != "--"; ++i) {
    const std::string_view arg = argv[i];
    const bool ours = arg == "--port" || arg == "--jobmanager-port" || arg == "--dashboard-port";
    const bool ours_with_value = arg.starts_with("--port=") ||
                                 arg.starts_with("--jobmanager-port=") ||
                                 arg.starts_with("--dashboard-port=");
    if (!submit || ours || ours_with_value || arg == "--help" || arg == "-h") {
      argv[kept++] = argv[i];
      if (ours && i + 1 < argc) argv[kept++] = argv[++i];
    } else {
      sbatch_options.emplace_back(arg);
    }
  }
  if (i < argc) program.assign(argv + i + 1, argv + argc);
  argc = kept;
}

int run(int argc, char** argv) {
  CLI::App app{"sage: a distributed stream processing engine. Starts clusters and manages jobs.",
               "sage"};
  app.set_version_flag("--version", std::string("sage ") + SAGE_VERSION);
  app.require_subcommand(1);
  app.fallthrough();
  GlobalOptions global;
  app.add_option("--state-dir", global.state_dir,
                 "Where pid, log and token files live (default $SAGE_STATE_DIR, else ~/.sage)");
  app.add_option("--address", global.address,
                 "JobManager host:port (default $SAGE_ADDRESS, else the head started from this "
                 "state directory, else 127.0.0.1:19001)")
      ->check([](const std::string& address) {
        try {
          if (net::Address::parse(address).port > 0) return std::string();
        } catch (const Error&) {
        }
        return "--address '" + address +
               "' is not <host>:<port> of a head's JobManager; e.g. --address=192.168.1.10:19001";
      });
  app.add_option("--token", global.token,
                 "Cluster token (default $SAGE_TOKEN, else the token file in the state directory; "
                 "prefer those: sage blanks this flag's value in its process list entry, but "
                 "other users may see it before that)")
      ->check([](const std::string& token) {
        try {
          net::check_token_text(token, "--token");
          return std::string();
        } catch (const Error& e) {
          return std::string(e.what());
        }
      });
  app.add_option("--tls-cert", global.tls.cert,
                 "This node's TLS certificate, PEM (head and workers; default $SAGE_TLS_CERT)");
  app.add_option("--tls-key", global.tls.key, "Its private key, PEM (default $SAGE_TLS_KEY)");
  app.add_option("--tls-ca", global.tls.ca,
                 "The CA that signed every node's certificate: turns TLS on for the control and "
                 "data planes (default $SAGE_TLS_CA)");
  app.add_option("--format", global.format, "Output format")
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
  start_cmd
      ->add_option("--dashboard-port", start.dashboard_port,
                   "Head: port of the dashboard, /metrics and /api/v1 (default 8265; 0: any)")
      ->check(CLI::Range(0, 65535))
      ->excludes(worker_flag);
  start_cmd->add_option("--head-address", start.head_address, "Worker: the head's <ip>:<port>")
      ->excludes(head_flag);
  start_cmd
      ->add_option("--num-cpus", start.node.num_cpus,
                   "CPUs this node offers (default: its cores; 0 on a head: no worker there)")
      ->check(kNotNegative)
      ->check(at_most(cluster::kMaxCpus));
  start_cmd->add_option("--num-gpus", start.node.num_gpus, "GPUs this node offers (default: found)")
      ->check(kNotNegative)
      ->check(at_most(cluster::kMaxGpus));
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

  auto* dashboard_cmd = app.add_subcommand(
      "dashboard", "Print the URL of the head's dashboard, with the token in its fragment");

  auto* job = app.add_subcommand("job", "List, inspect, follow, stop and submit jobs");
  job->require_subcommand(1);
  std::string job_id;
  bool follow = false;
  auto* list_cmd = job->add_subcommand("list", "All jobs, newest first");
  auto* job_status_cmd = job->add_subcommand("status", "State, error and statistics of a job");
  // The head refuses any other id too; checked here so that the error does
  // not repeat a long or unprintable argument whole.
  const auto job_id_check = [](const std::string& id) {
    const bool printable = std::all_of(id.begin(), id.end(), [](char c) {
      return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
    });
    if (id.size() <= cluster::kMaxIdBytes && printable) return std::string();
    std::string shown;
    for (char c : id.substr(0, 24)) shown += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
    return "'" + shown + "...' (" + std::to_string(id.size()) +
           " bytes) is not a job id; `sage job list` shows them (job-<12 hex digits>)";
  };
  job_status_cmd->add_option("job_id", job_id, "Job id (see `sage job list`)")
      ->required()
      ->check(job_id_check);
  auto* logs_cmd = job->add_subcommand("logs", "Output of a job's task processes");
  logs_cmd->add_option("job_id", job_id, "Job id")->required()->check(job_id_check);
  logs_cmd->add_flag("-f,--follow", follow, "Keep printing until the job ends");
  auto* job_stop_cmd = job->add_subcommand("stop", "Stop a job and its processes on every node");
  job_stop_cmd->add_option("job_id", job_id, "Job id")->required()->check(job_id_check);
  auto* submit_cmd = job->add_subcommand(
      "submit",
      "Run a program (and its arguments) whose RemoteEnvironment submits to this cluster: "
      "sage [options] job submit ./my_job [args...] (or script.py [args...], run with python3); "
      "everything after `submit` goes to the program");
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

  auto* slurm = app.add_subcommand(
      "slurm", "Run a program on a Slurm allocation that becomes a sage cluster for its run");
  slurm->require_subcommand(1);
  SlurmFlags slurm_flags;
  std::vector<std::string> sbatch_options, slurm_program;
  auto* slurm_submit_cmd = slurm->add_subcommand(
      "submit",
      "sage slurm submit [--port N] [--jobmanager-port N] [--dashboard-port N] [sbatch options] -- "
      "./my_job [args]: "
      "a batch job whose nodes run a head and workers for the program (docs/deploy.md)");
  auto* slurm_run_cmd = slurm->add_subcommand(
      "run",
      "sage slurm run [--port N] [--jobmanager-port N] [--dashboard-port N] -- ./my_job [args]: "
      "inside an "
      "allocation (sbatch, salloc), a head and workers on its nodes for the program");
  auto* slurm_head_cmd = slurm->add_subcommand("head", "A step of `sage slurm run`")->group("");
  auto* slurm_worker_cmd = slurm->add_subcommand("worker", "A step of `sage slurm run`")->group("");
  slurm_worker_cmd->add_option("--head-address", slurm_flags.head_address)->required();
  for (auto* command : {slurm_submit_cmd, slurm_run_cmd, slurm_head_cmd}) {
    command->add_option("--port", slurm_flags.port, "The head's cluster port (default 10001)")
        ->check(CLI::Range(1, 65535));
    command
        ->add_option("--jobmanager-port", slurm_flags.jobmanager_port,
                     "The head's JobManager port (default 19001)")
        ->check(CLI::Range(1, 65535));
    command
        ->add_option("--dashboard-port", slurm_flags.dashboard_port,
                     "The head's dashboard port (default 8265)")
        ->check(CLI::Range(1, 65535));
  }
  split_slurm_arguments(argc, argv, sbatch_options, slurm_program);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;  // --help and --version exit 0
  }
  hide_token_argument(argc, argv);
  if (global.state_dir.empty()) global.state_dir = cluster::default_state_dir();
  // Flags over the environment; exported for the threads, daemons and
  // programs this command starts.
  const net::TlsFiles from_environment = net::TlsFiles::from_environment();
  if (global.tls.cert.empty()) global.tls.cert = from_environment.cert;
  if (global.tls.key.empty()) global.tls.key = from_environment.key;
  if (global.tls.ca.empty()) global.tls.ca = from_environment.ca;
  for (std::string* path : {&global.tls.cert, &global.tls.key, &global.tls.ca}) {
    if (!path->empty()) *path = std::filesystem::absolute(*path).string();  // task processes chdir
  }
  if (global.address.empty()) {
    global.address = cluster::find_jobmanager_address(global.state_dir).address;
  }

  try {
    global.tls.export_to_environment();
    if (*start_cmd) return cluster_start(global, start);
    if (*status_cmd) return cluster_status(global);
    if (*stop_cmd) return cluster_stop(global);
    if (*dashboard_cmd) return dashboard_url(global);
    if (*list_cmd) return job_list(global);
    if (*job_status_cmd) return job_status(global, job_id);
    if (*logs_cmd) return job_logs(global, job_id, follow);
    if (*job_stop_cmd) return job_stop(global, job_id);
    if (*submit_cmd) return job_submit(global, submitted);
    if (*slurm_submit_cmd) return slurm_submit(slurm_flags, sbatch_options, slurm_program);
    if (*slurm_run_cmd) return slurm_run(global, slurm_flags, slurm_program);
    if (*slurm_head_cmd) return slurm_head(global, slurm_flags);
    if (*slurm_worker_cmd) return slurm_worker(global, slurm_flags);
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
