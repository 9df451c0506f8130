// The head's dashboard: an HTTP(S) server (cpp-httplib) on --dashboard-port
// that serves /metrics (Prometheus), /api/v1/... (JSON) and the page. Every
// path but the page's static files needs the cluster token as
// `Authorization: Bearer <token>`; without it the answer is 401. Runs on its
// own threads (a fixed pool) from construction to destruction; reads the
// cluster only through the ClusterView it borrows, which must outlive it.
#pragma once

#include <memory>
#include <string>

#include "dashboard/cluster_view.hpp"

namespace sage::dashboard {

struct DashboardOptions {
  std::string host = "127.0.0.1";  // the head's --host
  int port = 0;                    // 0: the system picks
  std::string token;               // the cluster token
  // With both set, HTTPS with this certificate and key (the head's TLS files).
  std::string tls_cert;
  std::string tls_key;
};

class DashboardServer {
 public:
  // Listens. Throws sage::Error naming the address and --dashboard-port when
  // the port is taken, and naming the file when TLS cannot start.
  DashboardServer(DashboardOptions options, const ClusterView& view);
  ~DashboardServer();
  DashboardServer(const DashboardServer&) = delete;
  DashboardServer& operator=(const DashboardServer&) = delete;

  int port() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sage::dashboard
