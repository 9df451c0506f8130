#include "cli/daemon.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>
#include <utility>

#include "sage/error.hpp"

namespace sage::cli {
namespace {

void write_all(int fd, const std::string& text) {
  std::size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n <= 0) return;
    written += static_cast<std::size_t>(n);
  }
}

// A zombie has ended: only its parent (init, for a daemon) has yet to reap it.
bool alive(int pid) {
  if (pid <= 0 || (::kill(pid, 0) != 0 && errno != EPERM)) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, command, state;
  return !(stat >> pid_field >> command >> state) || state != "Z";
}

sigset_t termination_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  return signals;
}

// The pid written in the file `fd`, or 0.
int pid_in(int fd) {
  char text[32] = {};
  const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
  return n > 0 ? std::atoi(text) : 0;
}

// Names the process holding `path` in an error.
[[noreturn]] void already_running(const std::string& path, int pid) {
  throw Error("a sage process of this state directory is already running as pid " +
              std::to_string(pid) + " (" + path +
              "); stop it with `sage cluster stop`, or pass another --state-dir");
}

}  // namespace

PidFile::PidFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd_ < 0) throw Error("cannot open " + path_ + ": " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int pid = pid_in(fd_);
    ::close(fd_);
    already_running(path_, pid);
  }
  const std::string text = std::to_string(getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 ||
      ::pwrite(fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    const std::string reason = std::strerror(errno);
    ::close(fd_);
    throw Error("cannot write " + path_ + ": " + reason);
  }
}

PidFile::~PidFile() {
  ::unlink(path_.c_str());
  ::close(fd_);
}

int running_pid(const std::string& pid_path) {
  const int fd = ::open(pid_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return 0;
  // Locked: its process is running. Not locked: whoever wrote it has ended,
  // and the pid in it may be anyone's now.
  int pid = 0;
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) pid = pid_in(fd);
  ::close(fd);
  return pid > 0 && alive(pid) ? pid : 0;
}

bool terminate(int pid, int grace_seconds) {
  ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    // A child of ours (foreground tests) must be reaped to stop being alive.
    ::waitpid(pid, nullptr, WNOHANG);
    if (!alive(pid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  return false;
}

std::string start_daemon(const std::string& pid_path, const std::string& log_path,
                         const std::function<void(const ReadyFn&)>& serve) {
  if (const int pid = running_pid(pid_path)) already_running(pid_path, pid);
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0)
    throw Error("cannot create a pipe: " + std::string(std::strerror(errno)));
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) throw Error("cannot fork: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    ::close(report[0]);
    setsid();
    const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log >= 0) {
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
    }
    if (null >= 0) dup2(null, STDIN_FILENO);
    int code = 0;
    bool reported = false;
    try {
      const PidFile pid_file(pid_path);
      serve([&](const std::string& message) {
        if (reported) return;
        reported = true;
        write_all(report[1], "+" + message);
        ::close(report[1]);
      });
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      if (!reported) write_all(report[1], "-" + std::string(e.what()));
      code = 1;
    }
    std::fflush(stdout);
    std::fflush(stderr);
    _exit(code);
  }
  ::close(report[1]);
  std::string reply;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(report[0], buffer, sizeof buffer)) > 0) reply.append(buffer, n);
  ::close(report[0]);
  if (reply.empty()) {
    throw Error("the process ended before it was ready; see its log " + log_path);
  }
  if (reply[0] == '-') throw Error(reply.substr(1));
  return reply.substr(1);
}

void block_termination_signals() {
  const sigset_t signals = termination_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

TerminationHandler::TerminationHandler(std::function<void()> stop) {
  const sigset_t signals = termination_signals();
  signal_fd_ = signalfd(-1, &signals, SFD_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC);
  if (signal_fd_ < 0 || wake_fd_ < 0) {
    const std::string reason = std::strerror(errno);
    if (signal_fd_ >= 0) ::close(signal_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
    throw Error("cannot wait for termination signals: " + reason);
  }
  thread_ = std::thread([this, stop = std::move(stop)] {
    pollfd fds[2] = {{signal_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    while (::poll(fds, 2, -1) < 0 && errno == EINTR) {
    }
    if ((fds[1].revents & POLLIN) != 0 || (fds[0].revents & POLLIN) == 0) return;
    signalled_ = true;
    stop();
  });
}

TerminationHandler::~TerminationHandler() {
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
  thread_.join();
  ::close(signal_fd_);
  ::close(wake_fd_);
}

}  // namespace sage::cli
