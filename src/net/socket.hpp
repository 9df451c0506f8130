// A TCP socket owned by one object (closed on destruction), with the blocking
// calls the data plane needs and errors that name the address and the fix.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <memory>
#include <string>

typedef struct ssl_st SSL;

namespace sage::net {

class TlsContext;

// For a thread that only reads TLS connections: OpenSSL's reads can write
// (alerts), and a write to a closed connection must be an error, not a
// SIGPIPE that ends the process. (Senders block it per call.)
void block_sigpipe_in_this_thread();

// "host:port" split, with the port checked. Throws sage::Error.
struct Address {
  std::string host;
  int port = 0;
  static Address parse(const std::string& text);
  std::string to_string() const { return host + ":" + std::to_string(port); }
};

// The local address this machine reaches `peer` from (by its routes; no
// packet is sent): the address other machines on that network reach it at.
// 127.0.0.1 when there is no route. Throws sage::Error when peer.host does
// not resolve.
std::string local_address_towards(const Address& peer);

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket();
  Socket(Socket&& other) noexcept : fd_(other.release()), tls_(std::move(other.tls_)) {}
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // Listens on host:port (port 0: any free port). Throws sage::Error naming
  // the address, e.g. when the port is in use.
  static Socket listen(const Address& address);
  // Connects, retrying refused connections until `deadline`. Throws sage::Error.
  static Socket connect(const Address& address, std::chrono::steady_clock::time_point deadline);

  // Waits for a connection until `until`: the connection, or an invalid
  // Socket when none came by then or the listener was shut down. Errors the
  // network leaves behind (a connection aborted before it was accepted) are
  // skipped; one that stops this process from taking connections (no file
  // descriptors or memory left) throws sage::Error naming it and the fix.
  Socket accept(std::chrono::steady_clock::time_point until) const;
  int local_port() const;
  // The connected peer as "host:port" ("unknown" once it is gone).
  std::string peer_address() const;

  // Runs the TLS handshake, as server or client as `context` is; later sends
  // and receives are encrypted. Throws sage::Error (e.g. a certificate the CA
  // did not sign, or a peer that does not speak TLS).
  void start_tls(const TlsContext& context);
  // Waits until the peer sends something: false if it closed the connection
  // (or it broke) without sending a byte.
  bool wait_for_data() const;

  // Sends all bytes of all buffers; throws sage::Error when the peer is gone.
  void send_all(iovec* buffers, int count) const;
  // Fills `out` completely; false on a clean end of stream before the first
  // byte, throws sage::Error on an end in the middle or an error.
  bool receive_all(void* out, std::size_t n) const;

  // Wakes any thread blocked in accept, send or receive on this socket.
  void shutdown() const;
  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  struct SslFree {
    void operator()(SSL* ssl) const;
  };
  void send_all_tls(const iovec* buffers, int count) const;

  int fd_ = -1;
  std::unique_ptr<SSL, SslFree> tls_;  // set once start_tls() succeeded
};

}  // namespace sage::net
