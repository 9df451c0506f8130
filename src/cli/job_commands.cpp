#include "cli/job_commands.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "cli/output_format.hpp"
#include "cluster/cluster_config.hpp"
#include "cluster/job_info.hpp"
#include "cluster/temporary_file.hpp"
#include "sage/error.hpp"

namespace sage::cli {

int job_list(const GlobalOptions& global) {
  const auto list = global.jobmanager().list_jobs();
  print_as(global.format, list, [&] { return job_list_table(list); });
  return 0;
}

int job_status(const GlobalOptions& global, const std::string& job_id) {
  const auto job = global.jobmanager().job(job_id);
  if (global.format == "json") {
    std::cout << job_status_json(job) << std::endl;
  } else {
    std::cout << job_description(job);
  }
  return 0;
}

int job_logs(const GlobalOptions& global, const std::string& job_id, bool follow) {
  const auto client = global.jobmanager();
  client.job(job_id);  // a clear error for an unknown id
  client.watch(job_id, follow, "cannot read the logs of " + job_id, [&](const std::string& line) {
    std::cout << line << '\n';
    if (follow) std::cout.flush();  // a follower sees each line as it comes
  });
  std::cout.flush();
  return 0;
}

int job_stop(const GlobalOptions& global, const std::string& job_id) {
  const auto client = global.jobmanager();
  auto job = client.stop_job(job_id);
  // Wait until every node has ended the job's processes.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!cluster::is_final(job.state())) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw Error("job " + job_id + " is still " + rpc::JobInfo::State_Name(job.state()) +
                  " 30 s after the stop; see `sage job status " + job_id + "`");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    job = client.job(job_id);
  }
  print_as(global.format, job, [&] {
    return "job " + job_id + " is " + rpc::JobInfo::State_Name(job.state()) +
           (job.error().empty() ? "" : ": " + job.error()) + '\n';
  });
  return 0;
}

namespace {

// The program `sage job submit` runs, while it runs: signals sent to this
// command go to it (those of the terminal reach both already).
volatile sig_atomic_t submitting_program = 0;

void pass_signal_on(int signal, siginfo_t* info, void*) {
  if (info->si_code <= 0 && submitting_program > 0) ::kill(submitting_program, signal);
}

#ifndef SAGE_PYTHON_EXECUTABLE
#define SAGE_PYTHON_EXECUTABLE "python3"
#endif

// Whether `path` is a Python script: its name ends in .py, or its first line
// is a #! line naming python.
bool is_python_script(const std::string& path) {
  if (path.ends_with(".py")) return true;
  std::ifstream file(path, std::ios::binary);
  std::string first_line;
  if (!file || !std::getline(file, first_line)) return false;
  return first_line.starts_with("#!") && first_line.find("python") != std::string::npos;
}

}  // namespace

int job_submit(const GlobalOptions& global, const std::vector<std::string>& given) {
  if (given.empty()) {
    throw CLI::ValidationError(
        "sage job submit needs a program: sage job submit ./my_job [args...] (or script.py)");
  }
  // A Python script runs with the interpreter sage was built for ($SAGE_PYTHON
  // overrides) and a fixed hash seed, so that every run builds the same plan.
  std::vector<std::string> command = given;
  if (is_python_script(given[0])) {
    const char* python = std::getenv("SAGE_PYTHON");
    command.insert(command.begin(),
                   python != nullptr && *python != '\0' ? python : SAGE_PYTHON_EXECUTABLE);
    setenv("PYTHONHASHSEED", "0", 0);
  }
  setenv("SAGE_ADDRESS", global.address.c_str(), 1);
  try {
    setenv("SAGE_TOKEN", global.cluster_token().c_str(), 1);
  } catch (const Error&) {
    // No token here: the program's RemoteEnvironment reports what is wrong
    // first (no head answering, before the missing token).
  }
  setenv("SAGE_STATE_DIR", global.state_dir.c_str(), 1);
  const cluster::TemporaryFile submitted("sage-submit");
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
                "; pass the path of a program built with sage or of a Python script (.py), or "
                "set $SAGE_PYTHON to the python3 that imports sage");
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
  std::ifstream lines(submitted.path());
  bool attempted = false;
  std::vector<std::string> job_ids;
  for (std::string line; std::getline(lines, line);) {
    attempted = true;
    if (line != cluster::kSubmittingLine) job_ids.push_back(line);
  }
  if (WIFSIGNALED(status)) {
    // Interrupted (Ctrl-C, a kill): what it submitted goes with it, as its
    // execute() would have seen to had it been a Python script.
    for (const auto& id : job_ids) {
      try {
        const auto info = global.jobmanager().stop_job(id);
        const auto state = info.state();
        if (state == rpc::JobInfo::FINISHED || state == rpc::JobInfo::FAILED) continue;  // ended
        std::cerr << "sage: stopped job " << id << ": " << command[0] << " ended by signal "
                  << strsignal(WTERMSIG(status)) << std::endl;
      } catch (const Error& e) {
        std::cerr << "sage: error: " << e.what() << std::endl;
      }
    }
  }
  // A program that tried to submit said why it could not itself.
  if (attempted) return code;
  std::cerr
      << "sage: error: " << command[0] << " ended ("
      << (WIFEXITED(status) ? "exit code " + std::to_string(code)
                            : std::string("signal ") + strsignal(WTERMSIG(status)))
      << ") without submitting a job; a program run by `sage job submit` submits "
         "its dataflow with sage::RemoteEnvironment (execute() or submit()), a Python script with "
         "sage.kernel.api.remote_environment.RemoteEnvironment"
      << std::endl;
  return code != 0 ? code : kExitError;
}

}  // namespace sage::cli
