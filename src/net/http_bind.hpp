// Binding a cpp-httplib server with a listen backlog fit for many clients at once.
//
// Debian's compiled cpp-httplib 0.11 listens with a backlog of 5. When more
// clients connect at once than that (a generator with 32 requests in flight, a
// page and a Prometheus scrape together), the kernel drops their SYNs and each
// waits 1, 3, 7 ... s for its retransmission. The backlog is fixed inside the
// library, so this remembers the listening socket through httplib's socket
// options hook and calls listen() on it again with SOMAXCONN, which Linux allows
// on a socket that listens already.
#pragma once

#include <httplib.h>
#include <sys/socket.h>

#include <functional>
#include <string>

namespace sage::net {

// Binds `server` to host:port (0: a free port) with `socket_options` applied to the
// listening socket before bind, and a backlog of SOMAXCONN; the port, or -1 when
// the address cannot be bound.
inline int bind_http_server(httplib::Server& server, const std::string& host, int port,
                            std::function<void(int)> socket_options) {
  int listening = -1;
  server.set_socket_options([&listening, socket_options = std::move(socket_options)](int socket) {
    socket_options(socket);
    listening = socket;
  });
  const int bound =
      port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  server.set_socket_options([](int) {});
  if (bound <= 0) return -1;
  if (listening >= 0 && ::listen(listening, SOMAXCONN) != 0) return -1;
  return bound;
}

}  // namespace sage::net
