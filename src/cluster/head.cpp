#include "cluster/head.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "cluster/cluster_service.hpp"
#include "cluster/head_state.hpp"
#include "cluster/job_store.hpp"
#include "cluster/jobmanager_service.hpp"
#include "cluster/program_store.hpp"
#include "dashboard/dashboard_server.hpp"
#include "net/rpc.hpp"
#include "sage/error.hpp"

namespace sage::cluster {
namespace {

// How often the monitor checks nodes for silence and jobs for overdue
// failures and for the history limit.
constexpr auto kMonitorInterval = std::chrono::milliseconds(100);

// The options, or sage::Error saying which is out of range.
HeadOptions checked(HeadOptions options) {
  if (options.job_history < 1) {
    throw Error("the head's job history must keep at least 1 job; pass --job-history 1 or more");
  }
  if (options.max_instances_per_job < 1 ||
      options.max_instances_per_job > kMaxInstancesPerJobLimit) {
    throw Error(fmt::format("--max-instances-per-job is {}; it must be 1 to {}",
                            options.max_instances_per_job, kMaxInstancesPerJobLimit));
  }
  return options;
}

// The dashboard's view of the head: its state, read under its lock, and the
// jobs' output, read from the job database (thread-safe) without it.
class HeadView final : public dashboard::ClusterView {
 public:
  HeadView(HeadState& state, const JobStore& store) : state_(state), store_(store) {}

  rpc::ClusterInfo cluster() const override {
    rpc::ClusterInfo info;
    MutexLock lock(state_.mutex);
    state_.nodes.list(&info);
    for (auto& job : state_.jobs.unfinished()) *info.add_running_jobs() = std::move(job);
    return info;
  }
  std::vector<rpc::JobInfo> job_summaries() const override {
    MutexLock lock(state_.mutex);
    return state_.jobs.summaries();
  }
  std::vector<rpc::JobInfo> jobs(std::int64_t ended_after_ms) const override {
    MutexLock lock(state_.mutex);
    return state_.jobs.list(ended_after_ms);
  }
  std::optional<rpc::JobInfo> job(const std::string& job_id) const override {
    MutexLock lock(state_.mutex);
    return state_.jobs.info(job_id);
  }
  std::optional<dashboard::OutputTail> output(const std::string& job_id, std::int64_t from_line,
                                              std::int64_t max_lines) const override {
    {
      MutexLock lock(state_.mutex);
      if (!state_.jobs.contains(job_id)) return std::nullopt;
    }
    dashboard::OutputTail tail;
    tail.line_count = store_.log_line_count(job_id);
    LogPage page = store_.logs(job_id, std::max(from_line, tail.line_count - max_lines), max_lines);
    tail.first_line = page.first_line;
    tail.lines = std::move(page.lines);
    return tail;
  }

 private:
  HeadState& state_;
  const JobStore& store_;
};

}  // namespace

// Owns the head's parts, and its monitor thread: each is constant after
// construction, except what HeadState guards with its mutex.
class Head::Impl {
 public:
  explicit Impl(HeadOptions options)
      : options_(checked(std::move(options))),
        programs_(options_.state_dir + "/programs"),
        store_(options_.state_dir + "/jobs.db", options_.max_job_output_bytes),
        state_(store_, programs_, options_.token, options_.job_history,
               checkpoint::checkpoint_base("", options_.state_dir)),
        jobmanager_(options_, state_, store_, programs_),
        cluster_(options_, state_, store_, programs_) {
    remove_forgotten(store_, take_forgotten(), options_.job_history);  // a lowered --job-history
    jobs_server_ = start_server(options_.jobmanager_port, jobmanager_, &jobmanager_port_);
    if (!jobs_server_) {
      throw Error("cannot listen on " + options_.host + ":" +
                  std::to_string(options_.jobmanager_port) +
                  " (JobManager): the port is in use or the address is not local; stop the "
                  "other process or pass --jobmanager-port");
    }
    cluster_server_ = start_server(options_.cluster_port, cluster_, &cluster_port_);
    if (!cluster_server_) {
      jobs_server_->Shutdown();
      throw Error("cannot listen on " + options_.host + ":" +
                  std::to_string(options_.cluster_port) +
                  " (cluster service): the port is in use or the address is not local; stop "
                  "the other process or pass --port");
    }
    try {
      dashboard_ = std::make_unique<dashboard::DashboardServer>(
          dashboard::DashboardOptions{options_.host, options_.dashboard_port, options_.token,
                                      options_.tls.enabled() ? options_.tls.cert : "",
                                      options_.tls.enabled() ? options_.tls.key : ""},
          view_);
      dashboard_port_ = dashboard_->port();
    } catch (...) {
      jobs_server_->Shutdown();
      cluster_server_->Shutdown();
      throw;
    }
    monitor_ = std::thread([this] { monitor(); });
  }

  ~Impl() {
    shutdown();
    if (monitor_.joinable()) monitor_.join();
  }

  int cluster_port() const { return cluster_port_; }
  int jobmanager_port() const { return jobmanager_port_; }
  int dashboard_port() const { return dashboard_port_; }

  void wait() {
    MutexLock lock(state_.mutex);
    while (!state_.shutting_down) state_.changed.wait(state_.mutex);
  }

  void shutdown() {
    {
      MutexLock lock(state_.mutex);
      if (state_.shutting_down) return;
      state_.shutting_down = true;
      state_.changed.notify_all();
    }
    const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(2);
    if (jobs_server_) jobs_server_->Shutdown(deadline);
    if (cluster_server_) cluster_server_->Shutdown(deadline);
    dashboard_.reset();
  }

 private:
  // The server of one service on `port` (0: any free one, written to
  // `bound`), or null when it cannot listen.
  std::unique_ptr<grpc::Server> start_server(int port, grpc::Service& service, int* bound) {
    grpc::ServerBuilder builder;
    net::configure_server(builder);
    builder.AddListeningPort(options_.host + ":" + std::to_string(port),
                             net::server_credentials(options_.tls), bound);
    builder.RegisterService(&service);
    auto server = builder.BuildAndStart();
    return server && *bound != 0 ? std::move(server) : nullptr;
  }

  std::vector<std::string> take_forgotten() {
    MutexLock lock(state_.mutex);
    return state_.jobs.take_forgotten();
  }

  // Marks silent nodes dead, fails jobs whose held error outlived its grace,
  // and forgets the ended jobs beyond the history.
  void monitor() {
    MutexLock lock(state_.mutex);
    auto next_tick = std::chrono::steady_clock::now();
    while (!state_.shutting_down) {
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
          next_tick - std::chrono::steady_clock::now());
      state_.changed.wait_for(state_.mutex,
                              std::clamp(wait, std::chrono::milliseconds(1), kMonitorInterval));
      const auto now = now_ms();
      // Checkpoints are due on their own clock, not the monitor's interval.
      next_tick = state_.jobs.tick(now);
      state_.jobs.fail_overdue(now);
      for (const auto& id : state_.nodes.silent_since(now - kNodeTimeout.count())) {
        state_.jobs.node_died(id, "node '" + id + "' stopped answering (no heartbeat for " +
                                      std::to_string(kNodeTimeout.count() / 1000) + " s)");
      }
      state_.changed.notify_all();
      if (auto forgotten = state_.jobs.take_forgotten(); !forgotten.empty()) {
        lock.unlock();
        remove_forgotten(store_, forgotten, options_.job_history);
        lock.lock();
      }
    }
  }

  // Constant after construction.
  const HeadOptions options_;
  ProgramStore programs_;  // thread-safe
  JobStore store_;         // thread-safe
  HeadState state_;        // guards itself: its mutex
  JobManagerService jobmanager_;
  ClusterService cluster_;
  int jobmanager_port_ = 0, cluster_port_ = 0, dashboard_port_ = 0;
  std::unique_ptr<grpc::Server> jobs_server_, cluster_server_;
  HeadView view_{state_, store_};
  std::unique_ptr<dashboard::DashboardServer> dashboard_;  // ended by shutdown()
  std::thread monitor_;
};

Head::Head(HeadOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Head::~Head() = default;
int Head::cluster_port() const { return impl_->cluster_port(); }
int Head::jobmanager_port() const { return impl_->jobmanager_port(); }
int Head::dashboard_port() const { return impl_->dashboard_port(); }
void Head::wait() { impl_->wait(); }
void Head::shutdown() { impl_->shutdown(); }

}  // namespace sage::cluster
