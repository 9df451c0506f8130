#include "sage/remote_environment.hpp"

#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "cluster/cluster_config.hpp"
#include "cluster/job_info.hpp"
#include "cluster/lease.hpp"
#include "cluster/program_store.hpp"
#include "cluster/task_output.hpp"
#include "cluster/task_process.hpp"
#include "graph/physical_plan.hpp"
#include "net/rpc.hpp"
#include "sage.grpc.pb.h"

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

// While a task process runs: SIGTERM (`sage job stop`) asks its tasks to
// stop, and every kProgressInterval their statistics go to the worker.
class TaskProcessControl {
 public:
  explicit TaskProcessControl(int result_fd) : result_fd_(result_fd) {
    // Blocked here, so every thread started later inherits the block and
    // only the waiting thread takes the signal.
    sigset_t terminate;
    sigemptyset(&terminate);
    sigaddset(&terminate, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &terminate, nullptr);
    std::thread([state = state_, terminate] {
      int signal = 0;
      sigwait(&terminate, &signal);
      std::lock_guard lock(state->mutex);
      state->stop_requested = true;
      if (state->tasks) state->tasks->request_stop();
    }).detach();  // lives until the process exits
  }

  // run_task_process's on_running: the tasks started, or (null) they ended.
  void update(const cluster::RunningTasks* tasks, const std::string& job_id, int process_index) {
    if (tasks == nullptr) {
      withdraw();
      return;
    }
    std::lock_guard lock(state_->mutex);
    state_->tasks = *tasks;
    if (state_->stop_requested) tasks->request_stop();
    reporter_ = std::thread([this, job_id, process_index] { report(job_id, process_index); });
  }

  ~TaskProcessControl() { withdraw(); }
  TaskProcessControl(const TaskProcessControl&) = delete;
  TaskProcessControl& operator=(const TaskProcessControl&) = delete;

 private:
  // No more stop requests or progress reports: the tasks are gone.
  void withdraw() {
    {
      std::lock_guard lock(state_->mutex);
      state_->tasks.reset();
      state_->changed.notify_all();
    }
    if (reporter_.joinable()) reporter_.join();
  }

  void report(const std::string& job_id, int process_index) {
    std::optional<JobResult> before;
    std::unique_lock lock(state_->mutex);
    while (!state_->changed.wait_for(lock, cluster::kProgressInterval,
                                     [&] { return !state_->tasks; })) {
      JobResult now = state_->tasks->statistics();
      rpc::ProgressReport report = cluster::progress_report(now, before ? &*before : nullptr);
      report.set_job_id(job_id);
      report.set_process_index(process_index);
      if (!cluster::write_result_frame(result_fd_, cluster::ResultFrameKind::kProgress,
                                       report.SerializeAsString())) {
        return;  // the worker is gone; it kills this process
      }
      before = std::move(now);
    }
  }

  struct State {
    std::mutex mutex;
    std::condition_variable changed;
    std::optional<cluster::RunningTasks> tasks;  // while they run
    bool stop_requested = false;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
  int result_fd_;
  std::thread reporter_;
};

// In a task process: run this process's share, tell the worker how it went
// through the result pipe, and end the process.
[[noreturn]] void run_as_task_process(const std::shared_ptr<detail::LogicalGraph>& graph,
                                      const ExecutionConfig& config) {
  const char* result_fd_text = std::getenv(cluster::kResultFdVariable);
  const int result_fd = result_fd_text != nullptr ? std::atoi(result_fd_text) : -1;
  rpc::ExitReport report;
  int code = 0;
  try {
    // Started by a worker: ends itself when the worker loses the head (fencing).
    if (const char* lease = std::getenv(cluster::kLeaseFdVariable); lease != nullptr) {
      cluster::watch_lease(std::atoi(lease));
    }
    const cluster::TaskOutput output;  // lines written by tasks say which
    const auto assignment =
        cluster::TaskAssignment::decode(std::getenv(cluster::kAssignmentVariable));
    cluster::TaskProcessResult result;
    {
      TaskProcessControl control(result_fd);
      result = cluster::run_task_process(
          graph, config, assignment, net::Socket(std::atoi(std::getenv(cluster::kDataFdVariable))),
          net::TlsFiles::from_environment(), [&](const cluster::RunningTasks* tasks) {
            control.update(tasks, assignment.job_id, assignment.process_index);
          });
    }
    for (const auto& s : result.instances) cluster::to_message(s, report.add_instances());
    if (result.state == JobState::kFailed) {
      report.set_error(net::valid_utf8(result.error));
      report.set_consequence(result.consequence);
      code = 1;
    }
  } catch (const std::exception& e) {
    report.set_error(net::valid_utf8(e.what()));
    code = 1;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  cluster::write_result_frame(result_fd, cluster::ResultFrameKind::kExit,
                              report.SerializeAsString());
  ::close(result_fd);
  std::exit(code);
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
  PendingNotice(rpc::JobManager::Stub& stub, std::string token, std::string job_id)
      : stub_(stub), token_(std::move(token)), job_id_(std::move(job_id)) {
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
      auto context = net::make_context(token_);
      call_ = context.get();
      lock.unlock();
      const grpc::Status status = stub_.GetJob(context.get(), ref, &info);
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

  rpc::JobManager::Stub& stub_;
  const std::string token_;
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

struct RemoteEnvironment::Client {
  explicit Client(const std::string& address)
      : stub(rpc::JobManager::NewStub(net::make_channel(address))) {}
  std::unique_ptr<rpc::JobManager::Stub> stub;
};

RemoteEnvironment::RemoteEnvironment(std::string name, std::string host, int port,
                                     ClusterConfig config, ExecutionConfig execution)
    : Environment(std::move(name), execution),
      address_(host + ":" + std::to_string(port)),
      where_(address_),
      cluster_(std::move(config)) {
  if (cluster_.state_dir.empty()) cluster_.state_dir = cluster::default_state_dir();
  if (const char* address = std::getenv("SAGE_ADDRESS"); address != nullptr && *address != '\0') {
    address_ = address;
    where_ = address_ + " (from SAGE_ADDRESS)";
  } else if (host == kDefaultHost && port == cluster::kDefaultJobManagerPort) {
    // As the `sage` command does: the head started from this state directory.
    const std::string info = cluster::head_info_path(cluster_.state_dir);
    const std::string local = cluster::local_jobmanager_address(cluster_.state_dir);
    if (!local.empty()) address_ = local;
    where_ = address_ + (local.empty() ? " (SAGE_ADDRESS is unset and " + info + " names no head)"
                                       : " (from " + info + ")");
  }
}

RemoteEnvironment::~RemoteEnvironment() = default;

std::string RemoteEnvironment::submit(bool autostop) {
  seal();
  if (is_task_process()) run_as_task_process(graph_, config_);

  const graph::PhysicalPlan plan = graph::PhysicalPlan::build(*graph_, config_);
  // Without a token the first call still goes out: "no head answers" is the
  // better message when there is no head, the token's absence when there is.
  std::string token_error;
  if (cluster_.token.empty()) {
    try {
      cluster_.token = cluster::find_token(cluster_.state_dir);
    } catch (const Error& e) {
      token_error = e.what();
    }
  }
  client_ = std::make_unique<Client>(address_);

  const std::string program = "/proc/self/exe";
  const std::string sha256 = cluster::sha256_of_file(program);
  {
    rpc::ProgramRef ref;
    ref.set_sha256(sha256);
    rpc::HasProgramReply has;
    auto context = net::make_context(cluster_.token);
    const auto status = client_->stub->HasProgram(context.get(), ref, &has);
    if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED && !token_error.empty()) {
      throw Error("cannot submit job '" + name() + "' to " + where_ + ": " + token_error);
    }
    if (!status.ok()) {
      throw Error(net::describe(status, "cannot submit job '" + name() + "'", where_));
    }
    if (!has.present()) {
      auto upload_context = net::make_context(cluster_.token);
      rpc::ProgramRef stored;
      auto writer = client_->stub->UploadProgram(upload_context.get(), &stored);
      std::ifstream file(program, std::ios::binary);
      std::string buffer(net::kProgramChunkBytes, '\0');
      rpc::ProgramChunk chunk;
      chunk.set_sha256(sha256);
      while (file.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) ||
             file.gcount() > 0) {
        chunk.set_data(buffer.data(), static_cast<std::size_t>(file.gcount()));
        if (!writer->Write(chunk)) break;
        chunk.clear_sha256();
      }
      writer->WritesDone();
      const auto uploaded = writer->Finish();
      if (!uploaded.ok()) throw Error(net::describe(uploaded, "cannot upload the program", where_));
    }
  }

  rpc::SubmitRequest request;
  request.set_name(name());
  request.set_program_sha256(sha256);
  for (const auto& arg : program_arguments()) request.add_args(arg);
  request.set_working_directory(working_directory());
  request.set_fingerprint(plan.fingerprint());
  for (const auto& chain : plan.chains()) {
    const auto& head = graph_->nodes[chain.nodes.front()];
    auto* spec = request.add_chains();
    spec->set_parallelism(chain.parallelism);
    spec->set_reserves(head.reserves_resources);
    spec->mutable_resources()->set_num_cpus(head.resources.num_cpus);
    spec->mutable_resources()->set_num_gpus(head.resources.num_gpus);
    spec->mutable_resources()->set_memory_bytes(head.resources.memory_bytes());
    for (int node : chain.nodes) spec->add_operators(graph_->nodes[node].name);
  }
  rpc::SubmitReply reply;
  auto context = net::make_context(cluster_.token);
  const auto status = client_->stub->SubmitJob(context.get(), request, &reply);
  if (!status.ok())
    throw Error(net::describe(status, "cannot submit job '" + name() + "'", where_));
  job_id_ = reply.job_id();
  if (const char* file = std::getenv(cluster::kSubmittedJobsVariable); file != nullptr) {
    std::ofstream(file, std::ios::app) << job_id_ << '\n';  // tells `sage job submit`
  }
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
  rpc::WatchRequest request;
  request.set_job_id(job_id_);
  request.set_follow(true);
  auto context = net::make_context(cluster_.token);
  auto reader = client_->stub->WatchJob(context.get(), request);
  rpc::JobEvent event;
  std::optional<rpc::JobInfo> final_state;
  {
    PendingNotice pending(*client_->stub, cluster_.token, job_id_);
    while (reader->Read(&event)) {
      if (event.has_output_line()) {
        pending.started();
        if (cluster_.stream_output) std::printf("%s\n", event.output_line().c_str());
      } else {
        final_state = event.state();
        if (final_state->started_at_ms() > 0) pending.started();
      }
    }
  }
  std::fflush(stdout);
  const auto status = reader->Finish();
  if (!status.ok()) throw Error(net::describe(status, "lost job " + job_id_, where_));
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
  rpc::JobRef ref;
  ref.set_job_id(job_id_);
  rpc::JobInfo info;
  auto context = net::make_context(cluster_.token);
  const auto status = client_->stub->StopJob(context.get(), ref, &info);
  if (!status.ok()) throw Error(net::describe(status, "cannot stop job " + job_id_, where_));
}

}  // namespace sage
