// The dashboard's public socket. It reads each request's head itself, with a
// cap on its size and one deadline for all of it, and only then hands the
// request to cpp-httplib, which listens on a loopback port of its own.
// cpp-httplib 0.11 (Debian's) buffers a request line or header without limit
// and restarts its read timeout at every byte, so a stranger without the
// token could otherwise grow the head's memory, or hold all of its request
// threads with connections that send a byte now and then. Here no connection
// holds more than kMaxHeadBytes before its request is whole, none waits
// longer than kHeadDeadline for it, and at most kMaxConnections are served
// at once (more are closed at once). With TLS it terminates HTTPS too.
// One request per connection: the answer says `Connection: close`.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <set>
#include <string>
#include <thread>

typedef struct ssl_ctx_st SSL_CTX;

namespace sage::dashboard {

class FrontDoor {
 public:
  static constexpr std::size_t kMaxHeadBytes = 16 << 10;
  static constexpr std::size_t kMaxBodyBytes = 64 << 10;
  static constexpr std::chrono::seconds kHeadDeadline{10};
  static constexpr std::chrono::seconds kAnswerDeadline{30};
  static constexpr int kMaxConnections = 128;

  // Listens on host:port (0: the system picks), passing requests to
  // 127.0.0.1:backend_port; HTTPS with tls_cert/tls_key when both are set.
  // Throws sage::Error when the port cannot be had or TLS cannot start.
  FrontDoor(const std::string& host, int port, int backend_port, const std::string& tls_cert,
            const std::string& tls_key);
  // Closes the socket and ends the connections being served.
  ~FrontDoor();
  FrontDoor(const FrontDoor&) = delete;
  FrontDoor& operator=(const FrontDoor&) = delete;

  int port() const { return port_; }

 private:
  void accept_loop();
  void serve(int client);

  int backend_port_;
  int listening_ = -1;
  int wake_[2] = {-1, -1};  // written by the destructor
  int port_ = 0;
  SSL_CTX* tls_ = nullptr;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::set<int> clients_;  // being served
  int serving_ = 0;        // threads still running serve()
  std::condition_variable served_;
  std::thread acceptor_;
};

}  // namespace sage::dashboard
