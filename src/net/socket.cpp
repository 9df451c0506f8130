#include "net/socket.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>
#include <thread>

#include "net/tls.hpp"
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
  const char* end = text.data() + text.size();
  const auto [rest, error] = std::from_chars(text.data() + colon + 1, end, address.port);
  if (error != std::errc() || rest != end) {
    throw Error("address '" + text + "' has no valid port number after ':'");
  }
  if (address.port < 0 || address.port > 65535) {
    throw Error("port " + std::to_string(address.port) + " in '" + text +
                "' is out of range 0..65535");
  }
  return address;
}

std::string local_address_towards(const Address& peer) {
  const sockaddr_in remote = resolve(peer);
  // Connecting a UDP socket sends nothing; it only picks the route.
  const Socket probe(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in local{};
  socklen_t length = sizeof local;
  char text[INET_ADDRSTRLEN];
  if (probe.valid() &&
      ::connect(probe.fd(), reinterpret_cast<const sockaddr*>(&remote), sizeof remote) == 0 &&
      getsockname(probe.fd(), reinterpret_cast<sockaddr*>(&local), &length) == 0 &&
      inet_ntop(AF_INET, &local.sin_addr, text, sizeof text) != nullptr) {
    return text;
  }
  return "127.0.0.1";
}

Socket::~Socket() {
  if (fd_ >= 0) ::close(fd_);
}

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    tls_.reset();
    if (fd_ >= 0) ::close(fd_);
    tls_ = std::move(other.tls_);
    fd_ = other.release();
  }
  return *this;
}

namespace {

// SSL_write writes with write(2), which raises SIGPIPE when the peer is gone
// and would kill the process; this blocks it for the calling thread and
// discards one raised meanwhile, so a lost peer is an error like without TLS.
class SigpipeBlocked {
 public:
  SigpipeBlocked() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &previous_);
  }
  ~SigpipeBlocked() {
    if (!was_pending_) {
      const timespec now{};
      while (sigtimedwait(&pipe_, nullptr, &now) == SIGPIPE) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  SigpipeBlocked(const SigpipeBlocked&) = delete;
  SigpipeBlocked& operator=(const SigpipeBlocked&) = delete;

 private:
  sigset_t pipe_, previous_;
  bool was_pending_ = false;
};

}  // namespace

void Socket::SslFree::operator()(SSL* ssl) const { SSL_free(ssl); }

void Socket::start_tls(const TlsContext& context) {
  const SigpipeBlocked blocked;  // the handshake writes too
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(context.get()));
  SSL_set_fd(ssl.get(), fd_);
  ERR_clear_error();  // what is left is this handshake's
  const int result = context.is_server() ? SSL_accept(ssl.get()) : SSL_connect(ssl.get());
  if (result != 1) {
    const long verified = SSL_get_verify_result(ssl.get());
    const unsigned long code = ERR_peek_last_error();
    if (verified != X509_V_OK) {
      throw Error(std::string("TLS handshake failed: certificate verify failed (") +
                  X509_verify_cert_error_string(verified) +
                  "); every node of the cluster needs a certificate signed by the same CA");
    }
    if (code != 0) {
      char text[256];
      ERR_error_string_n(code, text, sizeof text);
      throw Error(std::string("TLS handshake failed: ") + text +
                  "; every node of the cluster needs a certificate signed by the same CA");
    }
    throw Error(
        "TLS handshake failed: the peer closed the connection (it ended, or it refused this "
        "node's certificate)");
  }
  tls_ = std::move(ssl);
}

bool Socket::wait_for_data() const {
  char byte;
  while (true) {
    const ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK);
    if (n > 0) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

void block_sigpipe_in_this_thread() {
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
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

namespace {

// accept() errors that concern one connection, not the listener: Linux
// passes a new connection's pending network errors on (see accept(2)).
bool is_error_of_one_connection(int error) {
  switch (error) {
    case EINTR:
    case EAGAIN:
    case ECONNABORTED:
    case EPROTO:
    case EPERM:  // a firewall rule refused it
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
      return true;
    default:
      return false;
  }
}

}  // namespace

Socket Socket::accept(std::chrono::steady_clock::time_point until) const {
  // Non-blocking, so that a connection gone between poll and accept4 cannot
  // block this call past `until`. (Accepted sockets do not inherit it.)
  if (const int flags = ::fcntl(fd_, F_GETFL); flags >= 0 && (flags & O_NONBLOCK) == 0) {
    ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
  }
  while (true) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    pollfd listening{fd_, POLLIN, 0};
    const int ready = ::poll(
        &listening, 1,
        static_cast<int>(std::clamp<long long>(left.count(), 0, std::numeric_limits<int>::max())));
    if (ready == 0) return Socket();
    if (ready < 0 && errno == EINTR) continue;
    const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      set_no_delay(fd);
      return Socket(fd);
    }
    const int error = errno;
    if (error == EINVAL || error == EBADF) return Socket();  // shut down
    if (is_error_of_one_connection(error)) continue;
    const bool out_of_files = error == EMFILE || error == ENFILE;
    throw Error(std::string("cannot accept connections on port ") + std::to_string(local_port()) +
                ": " + std::strerror(error) +
                (out_of_files ? "; raise the open-file limit (ulimit -n, LimitNOFILE= in systemd) "
                                "of the node's sage processes"
                              : "; the node is short of memory or network buffers"));
  }
}

std::string Socket::peer_address() const {
  sockaddr_in addr{};
  socklen_t length = sizeof addr;
  if (getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &length) != 0) return "unknown";
  char host[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &addr.sin_addr, host, sizeof host);
  return std::string(host) + ":" + std::to_string(ntohs(addr.sin_port));
}

int Socket::local_port() const {
  sockaddr_in addr{};
  socklen_t length = sizeof addr;
  getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &length);
  return ntohs(addr.sin_port);
}

void Socket::send_all_tls(const iovec* buffers, int count) const {
  const SigpipeBlocked blocked;
  for (int i = 0; i < count; ++i) {
    const auto* p = static_cast<const char*>(buffers[i].iov_base);
    std::size_t left = buffers[i].iov_len;
    while (left > 0) {
      std::size_t written = 0;
      if (SSL_write_ex(tls_.get(), p, left, &written) != 1) {
        throw Error("connection lost while sending (TLS)");
      }
      p += written;
      left -= written;
    }
  }
}

void Socket::send_all(iovec* buffers, int count) const {
  if (tls_) {
    send_all_tls(buffers, count);
    return;
  }
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
    ssize_t r = 0;
    if (tls_) {
      std::size_t read = 0;
      if (SSL_read_ex(tls_.get(), p + got, n - got, &read) != 1) {
        const int error = SSL_get_error(tls_.get(), 0);
        if (error == SSL_ERROR_ZERO_RETURN || (error == SSL_ERROR_SYSCALL && errno == 0)) {
          r = 0;  // the peer closed the connection
        } else {
          throw Error("connection lost while receiving (TLS)");
        }
      } else {
        r = static_cast<ssize_t>(read);
      }
    } else {
      r = ::recv(fd_, p + got, n - got, 0);
    }
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
