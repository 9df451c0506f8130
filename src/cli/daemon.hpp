// Running a head or worker as a daemon of the `sage` command: a detached
// process with its output in a log file and its pid in a pid file, which
// reports back to the starting command once it serves (or why it could not).
#pragma once

#include <functional>
#include <string>

namespace sage::cli {

// Called by a service once it is ready; the message is what the starting
// command prints.
using ReadyFn = std::function<void(const std::string& message)>;

// Runs `serve` in a new session with stdout/stderr appended to `log_path` and
// its pid in `pid_path`. Returns serve's ready message once it calls ready;
// throws sage::Error with serve's error when it fails first. Throws when
// `pid_path` names a process that is still running.
std::string start_daemon(const std::string& pid_path, const std::string& log_path,
                         const std::function<void(const ReadyFn&)>& serve);

// Blocks SIGINT and SIGTERM in this thread and the threads it starts later,
// and runs `on_signal` on a thread of its own when one arrives. Call before
// starting other threads.
void on_termination_signal(std::function<void()> on_signal);

// The pid in `pid_path` if that process is alive, else 0.
int running_pid(const std::string& pid_path);

// Sends SIGTERM to `pid`, waits up to `grace_seconds` for it to exit, then
// sends SIGKILL. Returns false if it had to be killed.
bool terminate(int pid, int grace_seconds);

}  // namespace sage::cli
