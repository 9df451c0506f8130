#include "sage/remote_environment.hpp"

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>

#include "cluster/bundle.hpp"
#include "cluster/cluster_config.hpp"
#include "cluster/job_info.hpp"
#include "cluster/jobmanager_client.hpp"
#include "cluster/task_process.hpp"
#include "cluster/temporary_file.hpp"
#include "graph/physical_plan.hpp"

namespace sage {
namespace {

std::vector<std::string> program_arguments() {
  std::ifstream file("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  for (std::string arg; std::getline(file, arg, '\0');) args.push_back(arg);
  if (!args.empty()) args.erase(args.begin());  // the program itself travels by hash
  return args;
}

std::string working_directory() {
  char buffer[4096];
  return getcwd(buffer, sizeof buffer) != nullptr ? buffer : "/";
}

// Appends `line` to the file of `sage job submit` that ran this program, if
// it did (cluster::kSubmittedJobsVariable).
void tell_sage_job_submit(const std::string& line) {
  if (const char* file = std::getenv(cluster::kSubmittedJobsVariable); file != nullptr) {
    std::ofstream(file, std::ios::app) << line << '\n';
  }
}

// The host RemoteEnvironment's constructor defaults to.
constexpr const char* kDefaultHost = "127.0.0.1";

// How often a client following a PENDING job asks whether it started.
constexpr auto kPendingPoll = std::chrono::milliseconds(250);

// While a followed job is PENDING: says once why it waits, and then that it
// started. WatchJob sends output lines and the final state only, so a thread
// of its own asks the JobManager until the job no longer waits.
class PendingNotice {
 public:
  PendingNotice(const cluster::JobManagerClient& client, std::string job_id)
      : client_(client), job_id_(std::move(job_id)) {
    thread_ = std::thread([this] { follow(); });
  }
  ~PendingNotice() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
      if (call_ != nullptr) call_->TryCancel();
      changed_.notify_all();
    }
    thread_.join();
  }
  PendingNotice(const PendingNotice&) = delete;
  PendingNotice& operator=(const PendingNotice&) = delete;

  // The job has started: it produced output, or its final state says so.
  void started() {
    std::lock_guard lock(mutex_);
    say_started();
  }

 private:
  // REQUIRES: mutex_ held.
  void say_started() {
    if (said_waiting_ && !done_) std::fprintf(stderr, "job %s started\n", job_id_.c_str());
    done_ = true;
  }

  void follow() {
    std::unique_lock lock(mutex_);
    while (!done_) {
      rpc::JobRef ref;
      ref.set_job_id(job_id_);
      rpc::JobInfo info;
      auto context = client_.context();
      call_ = context.get();
      lock.unlock();
      const grpc::Status status = client_.stub().GetJob(context.get(), ref, &info);
      lock.lock();
      call_ = nullptr;
      if (done_) return;
      if (status.ok() && info.state() != rpc::JobInfo::PENDING) {
        if (info.started_at_ms() > 0) say_started();  // else stopped while it waited
        return;
      }
      if (status.ok() && !said_waiting_) {
        std::fprintf(stderr, "job %s is waiting: %s\n", job_id_.c_str(),
                     info.pending_reason().c_str());
        said_waiting_ = true;
      }
      changed_.wait_for(lock, kPendingPoll, [&] { return done_; });
    }
  }

  const cluster::JobManagerClient& client_;
  const std::string job_id_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool done_ = false;  // started, ended, or no longer followed
  bool said_waiting_ = false;
  grpc::ClientContext* call_ = nullptr;  // the GetJob under way
  std::thread thread_;
};

}  // namespace

bool is_task_process() { return std::getenv(cluster::kAssignmentVariable) != nullptr; }

RemoteEnvironment::RemoteEnvironment(std::string name, std::string host, int port,
                                     ClusterConfig config, ExecutionConfig execution)
    : Environment(std::move(name), execution),
      address_(host + ":" + std::to_string(port)),
      where_(address_),
      cluster_(std::move(config)) {
  if (cluster_.state_dir.empty()) cluster_.state_dir = cluster::default_state_dir();
  // As the `sage` command does: $SAGE_ADDRESS, else (for the default host
  // and port) the head started from this state directory.
  const auto found = cluster::find_jobmanager_address(cluster_.state_dir);
  if (found.from_environment || (host == kDefaultHost && port == cluster::kDefaultJobManagerPort)) {
    address_ = found.address;
    where_ = found.where;
  }
}

RemoteEnvironment::~RemoteEnvironment() = default;

std::string RemoteEnvironment::submit(bool autostop) {
  seal();
  if (is_task_process()) cluster::run_as_task_process(graph_, config_);

  tell_sage_job_submit(cluster::kSubmittingLine);
  const graph::PhysicalPlan plan = graph::PhysicalPlan::build(*graph_, config_);
  client_ = std::make_unique<cluster::JobManagerClient>(cluster::JobManagerClientOptions{
      .address = address_,
      .where = where_,
      .token = cluster_.token,
      .state_dir = cluster_.state_dir,
  });
  rpc::SubmitRequest request;
  request.set_name(name());
  const TaskProgram program = task_program_.value_or(TaskProgram{.args = program_arguments()});
  for (const auto& arg : program.args) request.add_args(arg);
  for (const auto& entry : program.environment) request.add_environment(entry);
  // The submitter's values of the forwarded variables the program does not set itself.
  for (const std::string& variable : cluster_.forward_environment) {
    const auto set_by_program = [&](const std::string& entry) {
      return entry.starts_with(variable + "=");
    };
    if (std::ranges::any_of(program.environment, set_by_program)) continue;
    if (const char* value = std::getenv(variable.c_str()); value != nullptr) {
      request.add_environment(variable + "=" + value);
    }
  }
  // A job with a bundle runs in it, unpacked on each node.
  if (program.bundle_directory.empty()) request.set_working_directory(working_directory());
  std::optional<cluster::TemporaryFile> bundle;
  if (!program.bundle_directory.empty()) {
    bundle.emplace("sage-bundle");
    cluster::write_bundle(program.bundle_directory, bundle->path(),
                          cluster::BundleLimits{.max_bytes = program.max_bundle_bytes,
                                                .max_files = program.max_bundle_files,
                                                .how_to_raise = program.how_to_raise_limits});
  }
  request.set_fingerprint(plan.fingerprint());
  request.set_processes_per_node(config_.task_processes_per_node);
  if (config_.checkpoint_interval.count() > 0) {
    auto* checkpoints = request.mutable_checkpoints();
    checkpoints->set_interval_ms(config_.checkpoint_interval.count());
    checkpoints->set_min_pause_ms(config_.min_pause_between_checkpoints.count());
    checkpoints->set_timeout_ms(config_.checkpoint_timeout.count());
    checkpoints->set_tolerable_failures(config_.tolerable_checkpoint_failures);
    checkpoints->set_retained(config_.retained_checkpoints);
    checkpoints->set_directory(config_.checkpoint_directory);
    checkpoints->set_restart_attempts(config_.restart_attempts);
    checkpoints->set_restart_delay_ms(config_.restart_delay.count());
  }
  for (const auto& chain : plan.chains()) {
    const auto& head = graph_->nodes[chain.nodes.front()];
    auto* spec = request.add_chains();
    spec->set_parallelism(chain.parallelism);
    spec->set_reserves(head.reserves_resources);
    spec->mutable_resources()->set_num_cpus(head.resources.num_cpus);
    spec->mutable_resources()->set_num_gpus(head.resources.num_gpus);
    spec->mutable_resources()->set_memory_bytes(head.resources.memory_bytes());
    for (int node : chain.nodes) {
      spec->add_operators(graph_->nodes[node].name);
      spec->add_operator_ids(node);
    }
  }
  for (std::size_t e = 0; e < graph_->edges.size(); ++e) {
    const auto& edge = graph_->edges[e];
    auto* spec = request.add_edges();
    spec->set_from_operator(edge.from);
    spec->set_to_operator(edge.to);
    spec->set_partitioning(detail::to_string(plan.partitioning(static_cast<int>(e))));
    spec->set_chained(plan.is_chained(static_cast<int>(e)));
  }
  job_id_ = client_->submit_job(std::move(request), program.executable,
                                bundle ? bundle->path() : std::string());
  tell_sage_job_submit(job_id_);
  if (autostop) wait();
  return job_id_;
}

JobResult RemoteEnvironment::wait() {
  if (job_id_.empty()) {
    throw InvalidPlanError("environment '" + name() +
                           "' has no job to wait for; call submit() first");
  }
  if (final_) {
    if (final_->state == JobState::kFailed) throw JobFailedError(*final_);
    return *final_;
  }
  std::optional<rpc::JobInfo> final_state;
  {
    PendingNotice pending(*client_, job_id_);
    final_state = client_->watch(job_id_, /*follow=*/true, "lost job " + job_id_,
                                 [&](const std::string& line) {
                                   pending.started();
                                   if (cluster_.stream_output) std::printf("%s\n", line.c_str());
                                 });
    if (final_state && final_state->started_at_ms() > 0) pending.started();
  }
  std::fflush(stdout);
  if (!final_state) {
    throw Error("lost job " + job_id_ + ": the head at " + where_ +
                " ended the stream without the job's final state; see `sage job status " + job_id_ +
                "`");
  }
  final_ = cluster::to_job_result(*final_state);
  if (final_->state == JobState::kFailed) throw JobFailedError(*final_);
  return *final_;
}

void RemoteEnvironment::stop() {
  if (job_id_.empty()) return;
  client_->stop_job(job_id_);
}

}  // namespace sage
