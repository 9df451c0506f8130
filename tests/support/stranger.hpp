// Test support: a stranger on a data-plane port (plain POSIX sockets, not the
// code under test), and the open files and threads of a process, to check
// that what strangers cost is given back.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sage::testing {

// A TCP connection to 127.0.0.1:port that never says hello.
class Stranger {
 public:
  explicit Stranger(int port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0) throw std::runtime_error("socket() failed");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      ::close(fd_);
      throw std::runtime_error("cannot connect to port " + std::to_string(port));
    }
  }
  ~Stranger() { ::close(fd_); }
  Stranger(const Stranger&) = delete;
  Stranger& operator=(const Stranger&) = delete;

  // Sends `bytes` (the receiver may have closed already: that is fine).
  void send(std::string_view bytes) const { ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL); }
  // Sends nothing more: the receiver reads the end of the stream.
  void end_sending() const { ::shutdown(fd_, SHUT_WR); }

  // Whether the receiver closes the connection within `timeout` (what it
  // might send first is read and dropped).
  bool closed_by_receiver(std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd readable{fd_, POLLIN, 0};
      if (::poll(&readable, 1, static_cast<int>(left.count())) <= 0) continue;
      char buffer[256];
      if (::recv(fd_, buffer, sizeof buffer, 0) <= 0) return true;
    }
  }

 private:
  int fd_;
};

// Between 0 and `most` random bytes.
inline std::string random_bytes(std::mt19937& random, std::size_t most) {
  std::string bytes(std::uniform_int_distribution<std::size_t>(0, most)(random), '\0');
  for (auto& b : bytes) b = static_cast<char>(random());
  return bytes;
}

// What a process holds: its open file descriptors and its threads.
struct ProcessHoldings {
  std::size_t files = 0;
  std::size_t threads = 0;
  // No more than `before` (threads that were ending then may be gone).
  bool at_most(const ProcessHoldings& before) const {
    return files <= before.files && threads <= before.threads;
  }
};

inline ProcessHoldings holdings_of(const std::string& pid = "self") {
  const auto count = [](const std::filesystem::path& dir) {
    std::size_t n = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      (void)entry;
      ++n;
    }
    return n;
  };
  const std::filesystem::path proc = "/proc/" + pid;
  return {count(proc / "fd"), count(proc / "task")};
}

inline std::string to_string(const ProcessHoldings& h) {
  return std::to_string(h.files) + " open files and " + std::to_string(h.threads) + " threads";
}

}  // namespace sage::testing
