#include "net/http_bind.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <vector>

namespace sage::net {
namespace {

// Starts a non-blocking connect to 127.0.0.1:port; the socket.
int start_connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  return fd;
}

// Nobody accepts here, so every connection that completes waits in the
// listening socket's queue: with httplib's own backlog of 5 the kernel drops
// the other SYNs and those clients retry after 1 s, 3 s, 7 s ...
TEST(HttpBindTest, SixtyFourClientsConnectAtOnceWhileNoneIsAccepted) {
  httplib::Server server;
  int options_applied = 0;
  const int port = bind_http_server(server, "127.0.0.1", 0, [&](int) { ++options_applied; });
  ASSERT_GT(port, 0);
  EXPECT_EQ(options_applied, 1) << "the caller's socket options reach the listening socket";

  constexpr int kClients = 64;
  std::vector<pollfd> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back({start_connect(port), POLLOUT, 0});
  // Below the first SYN retransmission (1 s): a dropped SYN cannot make it in time.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(900);
  int connected = 0;
  while (connected < kClients && std::chrono::steady_clock::now() < deadline) {
    for (auto& client : clients) client.revents = 0;
    poll(clients.data(), clients.size(), 10);
    connected = 0;
    for (auto& client : clients) {
      int error = -1;
      socklen_t length = sizeof error;
      getsockopt(client.fd, SOL_SOCKET, SO_ERROR, &error, &length);
      if ((client.revents & POLLOUT) != 0 && error == 0) ++connected;
    }
  }
  for (auto& client : clients) close(client.fd);
  EXPECT_EQ(connected, kClients) << "connections completed while none was accepted; the "
                                    "listening socket's backlog is too small";
}

TEST(HttpBindTest, APortInUseIsMinusOne) {
  httplib::Server first, second;
  const int port = bind_http_server(first, "127.0.0.1", 0, [](int) {});
  ASSERT_GT(port, 0);
  EXPECT_EQ(bind_http_server(second, "127.0.0.1", port, [](int) {}), -1);
}

}  // namespace
}  // namespace sage::net
