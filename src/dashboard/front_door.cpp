#include "dashboard/front_door.hpp"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <string_view>

#include "net/socket.hpp"
#include "sage/error.hpp"

namespace sage::dashboard {
namespace {

using Clock = std::chrono::steady_clock;

// Milliseconds left until `deadline`, for poll (0 once it has passed).
int millis_until(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<long long>(left.count(), 0, 60'000));
}

// Waits until `fd` is ready for `events` or `deadline`; false at the deadline.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    const int ready = ::poll(&p, 1, millis_until(deadline));
    if (ready > 0) return true;
    if (ready == 0 || errno != EINTR) return false;
  }
}

// One side of a proxied request: a non-blocking socket, with TLS when a
// context is given. Every call ends by its deadline.
class Connection {
 public:
  Connection(int fd, SSL_CTX* tls) : fd_(fd) {
    if (tls != nullptr) {
      ssl_ = SSL_new(tls);
      if (ssl_ != nullptr) SSL_set_fd(ssl_, fd);
    }
  }
  ~Connection() {
    if (ssl_ != nullptr) SSL_free(ssl_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The TLS handshake (nothing without TLS); false when it fails or is late.
  bool handshake(Clock::time_point deadline) {
    if (ssl_ == nullptr) return true;
    while (true) {
      const int done = SSL_accept(ssl_);
      if (done == 1) return true;
      if (!wait_on(SSL_get_error(ssl_, done), deadline)) return false;
    }
  }

  // Some bytes into `out`: their number, 0 at the end of the stream, -1 on an
  // error or at the deadline.
  long read(char* out, std::size_t size, Clock::time_point deadline) {
    while (true) {
      if (ssl_ != nullptr) {
        const int n = SSL_read(ssl_, out, static_cast<int>(size));
        if (n > 0) return n;
        const int error = SSL_get_error(ssl_, n);
        if (error == SSL_ERROR_ZERO_RETURN) return 0;
        if (!wait_on(error, deadline)) return -1;
        continue;
      }
      const ssize_t n = ::recv(fd_, out, size, 0);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if ((errno != EAGAIN && errno != EWOULDBLOCK) || !wait_for(fd_, POLLIN, deadline)) return -1;
    }
  }

  // All of `data`; false on an error or at the deadline.
  bool write(std::string_view data, Clock::time_point deadline) {
    while (!data.empty()) {
      if (ssl_ != nullptr) {
        const int n = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
        if (n > 0) {
          data.remove_prefix(static_cast<std::size_t>(n));
        } else if (!wait_on(SSL_get_error(ssl_, n), deadline)) {
          return false;
        }
        continue;
      }
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n > 0) {
        data.remove_prefix(static_cast<std::size_t>(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!wait_for(fd_, POLLOUT, deadline)) return false;
      } else {
        return false;
      }
    }
    return true;
  }

  void close_tls() {
    if (ssl_ != nullptr) SSL_shutdown(ssl_);
  }

 private:
  // After an OpenSSL call that did not finish: waits for what it wants.
  bool wait_on(int error, Clock::time_point deadline) {
    if (error == SSL_ERROR_WANT_READ) return wait_for(fd_, POLLIN, deadline);
    if (error == SSL_ERROR_WANT_WRITE) return wait_for(fd_, POLLOUT, deadline);
    return false;
  }

  int fd_;
  SSL* ssl_ = nullptr;
};

// A whole answer of the front door's own (the request never reached the
// dashboard), as the dashboard's errors are: JSON with "error".
std::string answer(int status, std::string_view reason, std::string_view message) {
  const std::string body = "{\"error\":\"" + std::string(message) + "\"}";
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
         "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// A request head, parsed as far as passing it on needs.
struct Head {
  std::string forwarded;  // the head to send on, with Connection: close
  std::size_t body_bytes = 0;
  std::string problem;  // why it cannot be served, as an answer; empty when it can
};

Head parse_head(std::string_view head) {
  Head parsed;
  std::size_t line_end = head.find("\r\n");
  parsed.forwarded.append(head.substr(0, line_end)).append("\r\n");  // the request line
  while (line_end + 2 < head.size()) {
    const std::size_t start = line_end + 2;
    line_end = head.find("\r\n", start);
    const std::string_view line = head.substr(start, line_end - start);
    const std::size_t colon = line.find(':');
    const std::string_view name = line.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
      value.remove_prefix(1);
    }
    if (same_name(name, "Connection") || same_name(name, "Keep-Alive") ||
        same_name(name, "Proxy-Connection")) {
      continue;
    }
    if (same_name(name, "Transfer-Encoding")) {
      parsed.problem = answer(411, "Length Required",
                              "a request body must come with Content-Length, not chunked");
      return parsed;
    }
    if (same_name(name, "Content-Length")) {
      const auto [end, error] =
          std::from_chars(value.data(), value.data() + value.size(), parsed.body_bytes);
      if (error != std::errc() || end != value.data() + value.size()) {
        parsed.problem = answer(400, "Bad Request", "Content-Length is not a number");
        return parsed;
      }
      if (parsed.body_bytes > FrontDoor::kMaxBodyBytes) {
        parsed.problem = answer(413, "Content Too Large", "the request body is over 64 KiB");
        return parsed;
      }
    }
    parsed.forwarded.append(line).append("\r\n");
  }
  parsed.forwarded.append("Connection: close\r\n\r\n");
  return parsed;
}

std::string openssl_reason() {
  const unsigned long code = ERR_get_error();
  char text[256] = "unknown reason";
  if (code != 0) ERR_error_string_n(code, text, sizeof text);
  ERR_clear_error();
  return text;
}

SSL_CTX* make_tls(const std::string& cert, const std::string& key) {
  SSL_CTX* context = SSL_CTX_new(TLS_server_method());
  if (context == nullptr) throw Error("the dashboard cannot start TLS: " + openssl_reason());
  SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(context, cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(context, key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(context) != 1) {
    const std::string reason = openssl_reason();
    SSL_CTX_free(context);
    throw Error("the dashboard cannot serve HTTPS with certificate " + cert + " and key " + key +
                ": " + reason + "; check that they are readable PEM files of one key");
  }
  return context;
}

}  // namespace

FrontDoor::FrontDoor(const std::string& host, int port, int backend_port,
                     const std::string& tls_cert, const std::string& tls_key)
    : backend_port_(backend_port) {
  if (!tls_cert.empty() && !tls_key.empty()) tls_ = make_tls(tls_cert, tls_key);
  try {
    net::Socket socket = net::Socket::listen({host, port});
    port_ = socket.local_port();
    listening_ = socket.release();
  } catch (const Error&) {
    if (tls_ != nullptr) SSL_CTX_free(tls_);
    throw Error("cannot listen on " + host + ":" + std::to_string(port) +
                " (dashboard): the port is in use or the address is not local; stop the other "
                "process or pass --dashboard-port (0 lets the system pick)");
  }
  if (::pipe2(wake_, O_CLOEXEC) != 0) {
    ::close(listening_);
    if (tls_ != nullptr) SSL_CTX_free(tls_);
    throw Error("the dashboard cannot create a pipe");
  }
  acceptor_ = std::thread([this] { accept_loop(); });
}

FrontDoor::~FrontDoor() {
  stopping_ = true;
  const char wake = 1;
  [[maybe_unused]] const auto written = ::write(wake_[1], &wake, 1);
  acceptor_.join();
  {
    std::unique_lock lock(mutex_);
    for (int client : clients_) ::shutdown(client, SHUT_RDWR);  // ends their reads and writes
    served_.wait(lock, [&] { return serving_ == 0; });
  }
  ::close(listening_);
  ::close(wake_[0]);
  ::close(wake_[1]);
  if (tls_ != nullptr) SSL_CTX_free(tls_);
}

void FrontDoor::accept_loop() {
  while (!stopping_) {
    pollfd fds[2] = {{listening_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (stopping_ || (fds[1].revents & POLLIN) != 0) return;
    const int client = ::accept4(listening_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (client < 0) {
      // Out of files or memory: the connection stays queued and poll would
      // report it at once again, so wait a little for some to be freed.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      continue;  // else it was gone before it was taken
    }
    std::lock_guard lock(mutex_);
    if (serving_ >= kMaxConnections) {
      ::close(client);  // as many as it serves are waiting already
      continue;
    }
    ++serving_;
    clients_.insert(client);
    std::thread([this, client] {
      net::block_sigpipe_in_this_thread();  // OpenSSL writes to peers that may be gone
      serve(client);
      std::lock_guard lock(mutex_);
      clients_.erase(client);
      ::close(client);
      --serving_;
      served_.notify_all();
    }).detach();
  }
}

void FrontDoor::serve(int client) {
  Connection from(client, tls_);
  const auto head_deadline = Clock::now() + kHeadDeadline;
  char buffer[16 << 10];
  // Answers a request that goes no further. What the client still sends is
  // read and dropped for a moment: closing with unread bytes would reset the
  // connection, and the client might lose the answer.
  const auto refuse = [&](const std::string& why) {
    const auto until = Clock::now() + std::chrono::seconds(1);
    if (!from.write(why, until)) return;
    from.close_tls();
    ::shutdown(client, SHUT_WR);
    for (std::size_t dropped = 0; dropped < (1 << 20);) {
      const long n = from.read(buffer, sizeof buffer, until);
      if (n <= 0) break;
      dropped += static_cast<std::size_t>(n);
    }
  };
  if (!from.handshake(head_deadline)) return;
  std::string request;
  std::size_t head_end = std::string::npos;
  while (head_end == std::string::npos) {
    if (request.size() >= kMaxHeadBytes) {
      refuse(answer(431, "Request Header Fields Too Large", "the request's head is over 16 KiB"));
      return;
    }
    const long n = from.read(buffer, std::min(sizeof buffer, kMaxHeadBytes - request.size() + 4),
                             head_deadline);
    if (n <= 0) {
      if (n < 0 && Clock::now() >= head_deadline) {
        refuse(answer(408, "Request Timeout", "the request's head took over 10 s"));
      }
      return;
    }
    request.append(buffer, static_cast<std::size_t>(n));
    head_end = request.find("\r\n\r\n");
  }
  if (head_end + 4 > kMaxHeadBytes) {
    refuse(answer(431, "Request Header Fields Too Large", "the request's head is over 16 KiB"));
    return;
  }
  Head head = parse_head(std::string_view(request).substr(0, head_end + 2));
  if (!head.problem.empty()) {
    refuse(head.problem);
    return;
  }
  std::string body = request.substr(head_end + 4);
  while (body.size() < head.body_bytes) {
    const long n =
        from.read(buffer, std::min(sizeof buffer, head.body_bytes - body.size()), head_deadline);
    if (n <= 0) return;
    body.append(buffer, static_cast<std::size_t>(n));
  }
  body.resize(std::min(body.size(), head.body_bytes));

  // Passed on whole; the dashboard answers and closes (Connection: close).
  const auto answer_deadline = Clock::now() + kAnswerDeadline;
  net::Socket backend;
  try {
    backend = net::Socket::connect({"127.0.0.1", backend_port_}, answer_deadline);
  } catch (const Error&) {
    from.write(answer(503, "Service Unavailable", "the dashboard is stopping"), answer_deadline);
    return;
  }
  ::fcntl(backend.fd(), F_SETFL, ::fcntl(backend.fd(), F_GETFL) | O_NONBLOCK);
  Connection to(backend.fd(), nullptr);
  if (!to.write(head.forwarded, answer_deadline) || !to.write(body, answer_deadline)) return;
  while (true) {
    const long n = to.read(buffer, sizeof buffer, answer_deadline);
    if (n <= 0) break;
    if (!from.write(std::string_view(buffer, static_cast<std::size_t>(n)), answer_deadline)) return;
  }
  from.close_tls();
}

}  // namespace sage::dashboard
