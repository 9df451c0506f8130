// Running a head or worker as a daemon of the `sage` command: a detached
// process with its output in a log file and its pid in a pid file, which
// reports back to the starting command once it serves (or why it could not).
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

namespace sage::cli {

// Called by a service once it is ready; the message is what the starting
// command prints.
using ReadyFn = std::function<void(const std::string& message)>;

// A pid file held for as long as its process serves: the file is locked
// (flock), so that a process is running exactly while its file is locked,
// whatever pid a file left by a crash (or a machine's restart) names.
class PidFile {
 public:
  // Writes this process's pid to `path` and locks it; throws sage::Error when
  // another process holds it.
  explicit PidFile(std::string path);
  // Removes the file and releases the lock.
  ~PidFile();
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

 private:
  std::string path_;
  int fd_ = -1;
};

// Runs `serve` in a new session with stdout/stderr appended to `log_path` and
// its pid in `pid_path` (a PidFile). Returns serve's ready message once it
// calls ready; throws sage::Error with serve's error when it fails first.
// Throws when `pid_path` names a process that is still running.
std::string start_daemon(const std::string& pid_path, const std::string& log_path,
                         const std::function<void(const ReadyFn&)>& serve);

// Blocks SIGINT and SIGTERM in this thread and the threads it starts later,
// so that only a TerminationHandler takes them (one that arrives before it
// exists waits for it). Call before starting other threads.
void block_termination_signals();

// Runs `stop` on a thread of its own when SIGINT or SIGTERM arrives, once.
// Declare it after the objects `stop` touches: its destructor waits for a
// `stop` under way and keeps any from starting, so they can go safely.
class TerminationHandler {
 public:
  explicit TerminationHandler(std::function<void()> stop);
  ~TerminationHandler();
  TerminationHandler(const TerminationHandler&) = delete;
  TerminationHandler& operator=(const TerminationHandler&) = delete;

  // A signal arrived (and `stop` ran or runs).
  bool signalled() const { return signalled_; }

 private:
  int signal_fd_ = -1;
  int wake_fd_ = -1;  // written by the destructor
  std::atomic<bool> signalled_{false};
  std::thread thread_;
};

// The pid of the process that holds `pid_path` (a PidFile), else 0.
int running_pid(const std::string& pid_path);

// Sends SIGTERM to `pid`, waits up to `grace_seconds` for it to exit, then
// sends SIGKILL. Returns false if it had to be killed.
bool terminate(int pid, int grace_seconds);

}  // namespace sage::cli
