#include "net/socket.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "sage/error.hpp"

namespace sage::net {
namespace {

sockaddr_in resolve(const Address& address) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(address.host.c_str(), nullptr, &hints, &found);
  if (rc != 0 || found == nullptr) {
    throw Error("cannot resolve host '" + address.host + "': " + gai_strerror(rc));
  }
  sockaddr_in result = *reinterpret_cast<const sockaddr_in*>(found->ai_addr);
  freeaddrinfo(found);
  result.sin_port = htons(static_cast<std::uint16_t>(address.port));
  return result;
}

void set_no_delay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

Address Address::parse(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    throw Error("address '" + text + "' is not host:port (e.g. 127.0.0.1:10001)");
  }
  Address address{text.substr(0, colon), 0};
  try {
    std::size_t used = 0;
    address.port = std::stoi(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1) throw std::invalid_argument("trailing characters");
  } catch (const std::exception&) {
    throw Error("address '" + text + "' has no valid port number after ':'");
  }
  if (address.port < 0 || address.port > 65535) {
    throw Error("port " + std::to_string(address.port) + " in '" + text +
                "' is out of range 0..65535");
  }
  return address;
}

Socket::~Socket() {
  if (fd_ >= 0) ::close(fd_);
}

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

Socket Socket::listen(const Address& address) {
  Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) throw Error(std::string("cannot create a socket: ") + std::strerror(errno));
  const int one = 1;
  setsockopt(s.fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const sockaddr_in addr = resolve(address);
  if (::bind(s.fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int error = errno;
    throw Error("cannot listen on " + address.to_string() + ": " + std::strerror(error) +
                (error == EADDRINUSE ? "; stop the process using the port or choose another" : ""));
  }
  if (::listen(s.fd_, SOMAXCONN) != 0) {
    throw Error("cannot listen on " + address.to_string() + ": " + std::strerror(errno));
  }
  return s;
}

Socket Socket::connect(const Address& address, std::chrono::steady_clock::time_point deadline) {
  const sockaddr_in addr = resolve(address);
  auto pause = std::chrono::milliseconds(5);
  while (true) {
    Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s.valid()) throw Error(std::string("cannot create a socket: ") + std::strerror(errno));
    if (::connect(s.fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      set_no_delay(s.fd_);
      return s;
    }
    const int error = errno;
    if ((error != ECONNREFUSED && error != EINTR) ||
        std::chrono::steady_clock::now() + pause >= deadline) {
      throw Error("cannot connect to " + address.to_string() + ": " + std::strerror(error));
    }
    // Refused: the peer is still starting. Back off up to 100 ms per attempt.
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
}

Socket Socket::accept() const {
  while (true) {
    const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      set_no_delay(fd);
      return Socket(fd);
    }
    if (errno != EINTR) return Socket();
  }
}

int Socket::local_port() const {
  sockaddr_in addr{};
  socklen_t length = sizeof addr;
  getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &length);
  return ntohs(addr.sin_port);
}

void Socket::send_all(iovec* buffers, int count) const {
  while (count > 0) {
    msghdr message{};
    message.msg_iov = buffers;
    message.msg_iovlen = static_cast<std::size_t>(count);
    const ssize_t sent = ::sendmsg(fd_, &message, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      throw Error(std::string("connection lost while sending: ") + std::strerror(errno));
    }
    auto left = static_cast<std::size_t>(sent);
    while (count > 0 && left >= buffers->iov_len) {
      left -= buffers->iov_len;
      ++buffers;
      --count;
    }
    if (count > 0) {
      buffers->iov_base = static_cast<char*>(buffers->iov_base) + left;
      buffers->iov_len -= left;
    }
  }
}

bool Socket::receive_all(void* out, std::size_t n) const {
  auto* p = static_cast<char*>(out);
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::recv(fd_, p + got, n - got, 0);
    if (r == 0) {
      if (got == 0) return false;
      throw Error("connection closed in the middle of a message");
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      throw Error(std::string("connection lost while receiving: ") + std::strerror(errno));
    }
    got += static_cast<std::size_t>(r);
  }
  return true;
}

void Socket::shutdown() const {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

}  // namespace sage::net
