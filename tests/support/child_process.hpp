// Test support: a child process with its output captured, killed (with its
// whole process group) if the test ends before it does.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace sage::testing {

class ChildProcess {
 public:
  // Starts `argv` with `extra_env` set (over this process's) and `inherit` fds made available at
  // the given numbers ({from, to}).
  ChildProcess(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
               const std::vector<std::pair<int, int>>& inherit = {}) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDERR_FILENO);
    for (auto [from, to] : inherit) posix_spawn_file_actions_adddup2(&actions, from, to);
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attributes, 0);
    // extra_env overrides what this process has.
    std::vector<std::string> env = extra_env;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      const std::string name = entry.substr(0, entry.find('=') + 1);
      if (std::none_of(extra_env.begin(), extra_env.end(),
                       [&](const std::string& x) { return x.rfind(name, 0) == 0; })) {
        env.push_back(entry);
      }
    }
    std::vector<char*> args, envp;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    const int rc =
        posix_spawn(&pid_, argv[0].c_str(), &actions, &attributes, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    close(out[1]);
    output_fd_ = out[0];
    if (rc != 0) {
      close(output_fd_);
      throw std::runtime_error("cannot start " + argv[0]);
    }
  }
  ~ChildProcess() {
    if (pid_ > 0 && !exited_) {
      kill(-pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (output_fd_ >= 0) close(output_fd_);
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  void kill_now() { kill(-pid_, SIGKILL); }

  // Reads output until it contains `text`; false if that does not happen
  // within `timeout` or the process closes its output first.
  bool wait_for_output(const std::string& text, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (output_.find(text) == std::string::npos) {
      if (!read_some(deadline)) return false;
    }
    return true;
  }

  // Reads output until the process closes it, then reaps it. Returns false
  // if that takes longer than `timeout` (the process is then killed).
  bool wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (read_some(deadline)) {
    }
    if (!closed_) {
      kill_now();
      return false;
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    exited_ = true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return true;
  }
  const std::string& output() const { return output_; }

 private:
  // Appends what the process wrote; false at the end of its output or the deadline.
  bool read_some(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{output_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return true;
    char buffer[65536];
    const ssize_t n = read(output_fd_, buffer, sizeof buffer);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    output_.append(buffer, static_cast<std::size_t>(n));
    return true;
  }

 public:
  int exit_code() const { return exit_code_; }

 private:
  pid_t pid_ = -1;
  int output_fd_ = -1;
  bool exited_ = false;
  int exit_code_ = -1;
  bool closed_ = false;
  std::string output_;
};

// Waits for all processes at once (a process whose output nobody reads would
// block on a full pipe). False if any did not end within `timeout`.
inline bool wait_all(const std::vector<ChildProcess*>& processes,
                     std::chrono::milliseconds timeout) {
  std::vector<std::thread> waiters;
  std::vector<char> ended(processes.size(), 0);
  for (std::size_t i = 0; i < processes.size(); ++i) {
    waiters.emplace_back([&, i] { ended[i] = processes[i]->wait(timeout); });
  }
  for (auto& t : waiters) t.join();
  return std::all_of(ended.begin(), ended.end(), [](char e) { return e != 0; });
}

}  // namespace sage::testing
