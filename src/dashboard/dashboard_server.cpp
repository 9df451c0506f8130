#include "dashboard/dashboard_server.hpp"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <optional>
#include <thread>

#include "dashboard/api.hpp"
#include "dashboard/front_door.hpp"
#include "dashboard/page_files.hpp"
#include "dashboard/prometheus.hpp"
#include "net/http_bind.hpp"
#include "net/rpc.hpp"
#include "sage/error.hpp"

namespace sage::dashboard {
namespace {

// The server's limits: its worker threads, the largest request it reads (it
// only answers GETs), and how long a connection may take or idle.
constexpr std::size_t kThreads = 4;
constexpr std::size_t kMaxRequestBytes = 64 << 10;
constexpr time_t kTimeoutSeconds = 5;
constexpr std::size_t kKeepAliveRequests = 100;

// How much of a job's output one request returns at most, and by default.
constexpr std::int64_t kMaxOutputLines = 1000;
constexpr std::int64_t kDefaultOutputLines = 100;

// The page's files (page_files.hpp) are the only paths served without the
// token. They load nothing from elsewhere, and browsers are told so.
constexpr const char* kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const PageFile* page_file(const std::string& path) {
  for (const PageFile& file : page_files()) {
    if (path == file.path) return &file;
  }
  return nullptr;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void send_json(httplib::Response& response, int status, const nlohmann::json& body) {
  response.status = status;
  response.set_header("Cache-Control", "no-store");
  // Invalid UTF-8 (a program's output may hold any bytes) becomes U+FFFD.
  response.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                       "application/json");
}

void send_error(httplib::Response& response, int status, const std::string& message) {
  send_json(response, status, {{"error", message}});
}

// A query parameter as a count in [0, max], `fallback` when absent; nullopt
// (after answering 400 naming it) when it is not one.
std::optional<std::size_t> count_parameter(const httplib::Request& request,
                                           httplib::Response& response, const char* name,
                                           std::size_t fallback, std::size_t max) {
  if (!request.has_param(name)) return fallback;
  const std::string text = request.get_param_value(name);
  std::size_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value > max) {
    send_error(response, 400,
               std::string(name) + " must be a whole number from 0 to " + std::to_string(max));
    return std::nullopt;
  }
  return value;
}

bool authorized(const httplib::Request& request, const std::string& token) {
  constexpr std::string_view kScheme = "Bearer ";
  const std::string header = request.get_header_value("Authorization");
  if (!std::string_view(header).starts_with(kScheme)) return false;
  return net::same_token(std::string_view(header).substr(kScheme.size()), token);
}

}  // namespace

class DashboardServer::Impl {
 public:
  // cpp-httplib serves on a loopback port of its own; the public port is the
  // front door's (dashboard/front_door.hpp), which also speaks HTTPS.
  Impl(DashboardOptions options, const ClusterView& view)
      : options_(std::move(options)), view_(view), server_(std::make_unique<httplib::Server>()) {
    configure();
    route();
    // SO_REUSEADDR but not httplib's default SO_REUSEPORT, with which another
    // server could share the port.
    const int backend = net::bind_http_server(*server_, "127.0.0.1", 0, [](int socket) {
      const int on = 1;
      setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    });
    if (backend <= 0) throw Error("the dashboard cannot listen on a loopback port");
    listener_ = std::thread([this] {
      server_->listen_after_bind();
      listening_done_ = true;
    });
    try {
      front_door_ = std::make_unique<FrontDoor>(options_.host, options_.port, backend,
                                                options_.tls_cert, options_.tls_key);
    } catch (...) {
      stop_backend();
      throw;
    }
  }

  ~Impl() {
    front_door_.reset();
    stop_backend();
  }

  int port() const { return front_door_->port(); }

 private:
  void configure() {
    server_->new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
    server_->set_payload_max_length(kMaxRequestBytes);
    server_->set_read_timeout(kTimeoutSeconds);
    server_->set_write_timeout(kTimeoutSeconds);
    server_->set_keep_alive_timeout(kTimeoutSeconds);
    server_->set_keep_alive_max_count(kKeepAliveRequests);
    server_->set_pre_routing_handler(
        [this](const httplib::Request& request, httplib::Response& response) {
          if (page_file(request.path) != nullptr || authorized(request, options_.token)) {
            return httplib::Server::HandlerResponse::Unhandled;
          }
          response.set_header("WWW-Authenticate", "Bearer");
          send_error(response, 401,
                     "no or wrong cluster token: send 'Authorization: Bearer <token>' with the "
                     "token of the head (sage dashboard prints a URL that carries it)");
          return httplib::Server::HandlerResponse::Handled;
        });
    server_->set_error_handler([](const httplib::Request& request, httplib::Response& response) {
      if (response.status == 404 && response.body.empty()) {
        send_error(response, 404, "no such path: " + request.path);
      }
    });
  }

  void route() {
    for (const PageFile& file : page_files()) {
      server_->Get(file.path, [&file](const httplib::Request&, httplib::Response& response) {
        response.set_header("Content-Security-Policy", kContentSecurityPolicy);
        response.set_header("X-Content-Type-Options", "nosniff");
        response.set_header("Referrer-Policy", "no-referrer");
        response.set_header("Cache-Control", "no-cache");
        response.set_content(file.body.data(), file.body.size(), file.content_type);
      });
    }
    server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
      const std::int64_t now = now_ms();
      const auto retention = std::chrono::milliseconds(kEndedJobSeriesRetention).count();
      response.set_content(render_metrics(view_.cluster(), view_.jobs(now - retention), now),
                           "text/plain; version=0.0.4; charset=utf-8");
    });
    server_->Get("/api/v1/cluster", [this](const httplib::Request&, httplib::Response& response) {
      send_json(response, 200, cluster_document(view_.cluster()));
    });
    server_->Get(
        "/api/v1/jobs", [this](const httplib::Request& request, httplib::Response& response) {
          const auto offset = count_parameter(request, response, "offset", 0, SIZE_MAX / 2);
          if (!offset) return;
          const auto limit =
              count_parameter(request, response, "limit", kDefaultJobsPerPage, kMaxJobsPerPage);
          if (!limit) return;
          send_json(response, 200, jobs_document(view_.job_summaries(), *offset, *limit));
        });
    // The id is only a key for the view's lookup, never part of a file path.
    server_->Get(R"(/api/v1/jobs/([^/]+))", [this](const httplib::Request& request,
                                                   httplib::Response& response) {
      const std::string id = request.matches[1];
      const auto job = view_.job(id);
      if (!job) {
        send_error(response, 404, "no job '" + id + "' on this head (GET /api/v1/jobs lists them)");
        return;
      }
      if (request.has_param("instances") && request.get_param_value("instances") != "0" &&
          request.get_param_value("instances") != "1") {
        send_error(response, 400, "instances must be 0 or 1");
        return;
      }
      const bool instances = request.get_param_value("instances") == "1";
      int only_operator = -1;
      if (request.has_param("operator")) {
        const auto id = count_parameter(request, response, "operator", 0, INT32_MAX);
        if (!id) return;
        only_operator = static_cast<int>(*id);
      }
      send_json(response, 200, job_document(*job, instances, now_ms(), only_operator));
    });
    // The API and the page only read: every other method is 405, with the
    // methods there are (after the token check, as every path).
    const auto read_only = [](const httplib::Request& request, httplib::Response& response) {
      response.set_header("Allow", "GET, HEAD");
      send_error(response, 405, request.method + " is not allowed: the dashboard only reads (GET)");
    };
    server_->Post(".*", read_only);
    server_->Put(".*", read_only);
    server_->Patch(".*", read_only);
    server_->Delete(".*", read_only);
    server_->Get(R"(/api/v1/jobs/([^/]+)/output)", [this](const httplib::Request& request,
                                                          httplib::Response& response) {
      const std::string id = request.matches[1];
      const auto from = count_parameter(request, response, "from", 0, INT64_MAX);
      if (!from) return;
      const auto lines =
          count_parameter(request, response, "lines", kDefaultOutputLines, kMaxOutputLines);
      if (!lines) return;
      const auto tail =
          view_.output(id, static_cast<std::int64_t>(*from), static_cast<std::int64_t>(*lines));
      if (!tail) {
        send_error(response, 404, "no job '" + id + "' on this head (GET /api/v1/jobs lists them)");
        return;
      }
      send_json(response, 200, output_document(*tail));
    });
  }

  void stop_backend() {
    // stop() only acts once the listener runs; until then there is nothing to end.
    while (!server_->is_running() && !listening_done_) std::this_thread::yield();
    server_->stop();
    listener_.join();
  }

  const DashboardOptions options_;
  const ClusterView& view_;
  std::unique_ptr<httplib::Server> server_;
  std::atomic<bool> listening_done_{false};
  std::thread listener_;
  std::unique_ptr<FrontDoor> front_door_;
};

DashboardServer::DashboardServer(DashboardOptions options, const ClusterView& view)
    : impl_(std::make_unique<Impl>(std::move(options), view)) {}
DashboardServer::~DashboardServer() = default;
int DashboardServer::port() const { return impl_->port(); }

}  // namespace sage::dashboard
