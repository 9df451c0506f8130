#include "cluster/worker.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "cluster/bundle.hpp"
#include "cluster/cluster_config.hpp"
#include "cluster/lease.hpp"
#include "cluster/memory_watch.hpp"
#include "cluster/output_relay.hpp"
#include "cluster/process_launcher.hpp"
#include "cluster/program_store.hpp"
#include "net/rpc.hpp"
#include "net/socket.hpp"
#include "sage.grpc.pb.h"
#include "sage/error.hpp"

namespace sage::cluster {
namespace {

// A worker that lost the head tries to join again this often, so it is back
// soon after the head answers again.
constexpr auto kRejoinPause = std::chrono::milliseconds(500);
// Programs cached beyond those of running processes.
constexpr std::size_t kCachedPrograms = 8;
// What a worker unpacks of a job's bundle at most: as much as a head takes
// by default (--max-program-size), in as many files as anyone needs.
const BundleLimits kUnpackLimits{.max_bytes = std::uint64_t{1} << 30, .max_files = 100'000};
// How long a stopped job's processes may take to drain before they are killed.
constexpr auto kDrainTimeout = std::chrono::seconds(10);

// The GPUs this worker may use: those its CUDA_VISIBLE_DEVICES lists (as a
// resource manager such as Slurm sets it), else every /dev/nvidiaN.
int count_gpus() {
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES"); visible != nullptr) {
    const std::string list(visible);
    if (list.empty()) return 0;
    return static_cast<int>(std::count(list.begin(), list.end(), ',')) + 1;
  }
  int count = 0;
  while (::access(("/dev/nvidia" + std::to_string(count)).c_str(), F_OK) == 0) ++count;
  return count;
}

// Why the task processes of a node end when its lease runs out.
std::string lease_ran_out() {
  return "no heartbeat of the node reached the head for " +
         std::to_string(kNodeTimeout.count() / 1000) + " s, so the head counts it as dead";
}

std::uint64_t machine_memory() {
  return static_cast<std::uint64_t>(sysconf(_SC_PHYS_PAGES)) *
         static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

class Worker::Impl {
 public:
  explicit Impl(WorkerOptions options)
      : options_(std::move(options)),
        programs_(options_.state_dir + "/programs"),
        bundles_(options_.state_dir + "/bundles") {
    if (options_.num_cpus <= 0) options_.num_cpus = std::thread::hardware_concurrency();
    if (options_.num_gpus < 0) options_.num_gpus = count_gpus();
    if (options_.memory_bytes == 0) options_.memory_bytes = machine_memory();
    memory_checker_ = std::thread([this] { check_memory(); });
  }

  ~Impl() {
    stop();
    kill_all();
    std::unique_lock lock(mutex_);
    reaped_.wait(lock, [&] { return processes_.empty(); });
    lock.unlock();
    memory_checker_.join();
  }

  void run() {
    while (!stopping()) {
      serve_one_session();
      kill_all();
      if (stopping()) break;
      std::unique_lock lock(mutex_);
      changed_.wait_for(lock, kRejoinPause, [&] { return stopping_; });
    }
  }

  void stop() {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    if (session_) session_->TryCancel();
    changed_.notify_all();
  }

 private:
  struct Running {
    pid_t pid = 0;
    std::string job_id;
    std::string program;  // its SHA-256
    std::string bundle;   // its bundle's SHA-256, if it has one
    MemoryWatch memory;
  };

  // Keeps every task process within its memory limit, on a thread of its own
  // so that a slow head (which the output relay waits for) delays no check.
  void check_memory() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      changed_.wait_for(lock, kMemoryCheckInterval);
      for (auto& [pid, running] : processes_) running.memory.check();
    }
  }

  bool stopping() {
    std::lock_guard lock(mutex_);
    return stopping_;
  }

  void serve_one_session() {
    rpc::JoinRequest join;
    join.set_node_id(options_.node_id);
    join.set_host(options_.host);
    join.mutable_resources()->set_num_cpus(options_.num_cpus);
    join.mutable_resources()->set_num_gpus(options_.num_gpus);
    join.mutable_resources()->set_memory_bytes(options_.memory_bytes);
    auto context = net::make_context(options_.token);
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      session_ = context.get();
    }
    // A channel of its own for each attempt, which connects at once: a reused
    // one would first wait out gRPC's reconnect backoff, which grows with the
    // time the head was away (up to 2 minutes). No other thread uses the stub
    // between sessions (kill_all() joined them).
    stub_ = rpc::ClusterService::NewStub(net::make_channel(options_.head_address, options_.tls));
    const auto join_sent = Lease::Clock::now();
    auto stream = stub_->Join(context.get(), join);
    std::thread heartbeat;
    rpc::WorkerCommand command;
    bool joined = false;
    while (stream->Read(&command)) {
      if (command.has_welcome()) {
        spdlog::info("node {} joined the head at {}", options_.node_id, options_.head_address);
        // The head took the join as this node's first heartbeat.
        lease_.grant(join_sent + kNodeTimeout);
        heartbeat = std::thread([this] { send_heartbeats(); });
        joined = true;
        ever_joined_ = true;
        if (options_.on_joined) options_.on_joined();
        continue;
      }
      handle(command);
    }
    const grpc::Status status = stream->Finish();
    {
      std::lock_guard lock(mutex_);
      session_ = nullptr;
      heartbeat_stop_ = true;
      changed_.notify_all();
    }
    if (heartbeat.joinable()) heartbeat.join();
    {
      std::lock_guard lock(mutex_);
      heartbeat_stop_ = false;
    }
    // After a lost connection the head may still hold this node's old session
    // until it times out: then ALREADY_EXISTS means "try again shortly".
    const bool refused = status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
                         status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
                         (status.error_code() == grpc::StatusCode::ALREADY_EXISTS && !ever_joined_);
    if (refused) {
      throw Error("the head at " + options_.head_address + " refused node '" + options_.node_id +
                  "': " + status.error_message());
    }
    if (!joined && !ever_joined_ && !stopping()) {
      throw Error(net::describe(status, "node '" + options_.node_id + "' cannot join the cluster",
                                options_.head_address));
    }
    if (stopping()) return;
    if (joined) {
      const std::string why = lease_.expired() ? lease_ran_out()
                              : status.ok()    ? "it ended this node's session"
                                               : status.error_message();
      spdlog::warn("lost the head at {} ({}); task processes stopped, joining again",
                   options_.head_address, why);
    } else {  // every kRejoinPause while the head is away: once it was lost is enough
      spdlog::debug("cannot join the head at {} yet: {}", options_.head_address,
                    status.error_message());
    }
  }

  // Renews the lease with every heartbeat the head answers. When it expires
  // (the head is frozen or cut off, or this worker was), the head counts the
  // node as dead and the task processes have ended themselves: the worker
  // makes sure they are gone and ends the session, to join again.
  void send_heartbeats() {
    std::unique_lock lock(mutex_);
    while (!heartbeat_stop_ && !stopping_) {
      changed_.wait_for(lock, kHeartbeatInterval);
      if (heartbeat_stop_ || stopping_) break;
      lock.unlock();
      rpc::NodeRef node;
      node.set_node_id(options_.node_id);
      rpc::Empty reply;
      auto context = net::make_context(options_.token);
      // A late answer still counts: on a loaded machine the head may answer
      // after seconds, yet it counted the heartbeat when it arrived, so
      // giving up on it sooner would end task processes of a node the head
      // holds alive.
      context->set_deadline(std::chrono::system_clock::now() + kNodeTimeout);
      const auto sent = Lease::Clock::now();
      const grpc::Status status = stub_->Heartbeat(context.get(), node, &reply);
      // The head saw the heartbeat after it was sent: the lease ends no later
      // than the head's count of the node's silence does.
      const bool renewed = status.ok() ? lease_.renew(sent + kNodeTimeout) : !lease_.expired();
      lock.lock();
      if (!renewed && !heartbeat_stop_ && !stopping_) {
        kill_processes();
        if (session_) session_->TryCancel();
        break;
      }
    }
  }

  void handle(const rpc::WorkerCommand& command) {
    if (command.has_prepare()) {
      prepare(command.prepare());
    } else if (command.has_start()) {
      // Fetching a program can take a while: do it off the command stream.
      std::lock_guard lock(mutex_);
      spawn([this, start = command.start()] { start_process(start); });
    } else if (command.has_stop()) {
      if (command.stop().drain()) {
        drain_job(command.stop().job_id(), command.stop().attempt());
      } else {
        kill_job(command.stop().job_id(), command.stop().attempt());
      }
    }
  }

  void prepare(const rpc::PrepareProcess& prepare) {
    rpc::PreparedReport report;
    report.set_node_id(options_.node_id);
    report.set_job_id(prepare.job_id());
    report.set_process_index(prepare.process_index());
    report.set_attempt(prepare.attempt());
    try {
      net::Socket listener = net::Socket::listen({options_.host, 0});
      report.set_data_address(options_.host + ":" + std::to_string(listener.local_port()));
      std::lock_guard lock(mutex_);
      listeners_[key(prepare.job_id(), prepare.process_index())] = std::move(listener);
    } catch (const Error& e) {
      report.set_error(e.what());
    }
    rpc::Empty reply;
    const grpc::Status status =
        stub_->ReportPrepared(net::make_context(options_.token).get(), report, &reply);
    if (!status.ok()) {
      spdlog::warn("job {}: the head did not take the report that process {} is prepared: {}",
                   prepare.job_id(), prepare.process_index(), status.error_message());
    }
  }

  static std::string key(const std::string& job_id, int process) {
    return job_id + "/" + std::to_string(process);
  }

  // Fetches the program and the bundle (if any) unless cached, unpacks the
  // bundle, and keeps the cache to the programs and bundles of running
  // processes and the most recently used few. Returns the unpacked bundle's
  // directory, empty without one.
  std::string ensure_program(const std::string& sha256, const std::string& bundle) {
    std::lock_guard fetch_lock(fetch_mutex_);
    std::set<std::string> in_use = {sha256};
    std::string unpacked;
    for (const std::string& needed : {sha256, bundle}) {
      if (needed.empty()) continue;
      programs_.touch(needed);
      if (!programs_.contains(needed)) fetch_program(needed);
    }
    if (!bundle.empty()) {
      unpacked = bundles_.ensure(bundle, programs_.path_of(bundle), kUnpackLimits);
      in_use.insert(bundle);
    }
    {
      std::lock_guard lock(mutex_);
      for (const auto& [pid, running] : processes_) {
        in_use.insert(running.program);
        if (!running.bundle.empty()) in_use.insert(running.bundle);
      }
    }
    programs_.prune(kCachedPrograms, in_use);
    bundles_.prune([&](const std::string& hash) {
      return in_use.count(hash) > 0 || programs_.contains(hash);
    });
    return unpacked;
  }

  void fetch_program(const std::string& sha256) {
    auto context = net::make_context(options_.token);
    rpc::ProgramRef ref;
    ref.set_sha256(sha256);
    auto reader = stub_->FetchProgram(context.get(), ref);
    auto upload = programs_.begin_upload(sha256);
    rpc::ProgramChunk chunk;
    while (reader->Read(&chunk)) upload->append(chunk.data());
    const auto status = reader->Finish();
    if (!status.ok())
      throw Error(net::describe(status, "cannot fetch the program", options_.head_address));
    upload->commit();
  }

  void report_exit(const rpc::StartProcess& start, int code, const std::string& error,
                   const rpc::ExitReport* details) {
    rpc::ExitReport report;
    if (details != nullptr) report = *details;
    report.set_job_id(start.job_id());
    report.set_process_index(start.process_index());
    report.set_attempt(start.attempt());
    report.set_exit_code(code);
    if (report.error().empty()) report.set_error(error);
    rpc::Empty reply;
    const grpc::Status status =
        stub_->ReportExit(net::make_context(options_.token).get(), report, &reply);
    if (!status.ok()) {
      spdlog::warn("job {}: the head did not take the report that process {} ended ({}): {}",
                   report.job_id(), report.process_index(),
                   report.error().empty() ? "exit code " + std::to_string(report.exit_code())
                                          : report.error(),
                   status.error_message());
    }
  }

  void start_process(const rpc::StartProcess& start) {
    net::Socket listener;
    std::uint64_t generation = 0;
    bool cancelled = false;
    {
      std::lock_guard lock(mutex_);
      generation = generation_;
      cancelled = stopped_runs_.count(run_of(start.job_id(), start.attempt())) > 0;
      auto it = listeners_.find(key(start.job_id(), start.process_index()));
      if (it != listeners_.end()) {
        listener = std::move(it->second);
        listeners_.erase(it);
      }
    }
    if (cancelled) {
      report_exit(
          start, 1,
          "the job was stopped before its process on node '" + options_.node_id + "' started",
          nullptr);
      return;
    }
    if (!listener.valid()) {
      report_exit(start, 1, "node '" + options_.node_id + "' has no reserved port for the process",
                  nullptr);
      return;
    }
    std::string working_directory = start.working_directory();
    try {
      // A job with a bundle runs in it (and nowhere its submitter named).
      const std::string unpacked = ensure_program(start.program_sha256(), start.bundle_sha256());
      if (!unpacked.empty()) working_directory = unpacked;
    } catch (const Error& e) {
      report_exit(start, 1, "node '" + options_.node_id + "': " + e.what(), nullptr);
      return;
    }
    std::optional<LaunchedProcess> process;
    try {
      process.emplace(launch_task_process({
          .program = programs_.path_of(start.program_sha256()),
          .args = {start.args().begin(), start.args().end()},
          .working_directory = working_directory,
          .assignment = start.assignment(),
          .gpu_indices = {start.gpu_indices().begin(), start.gpu_indices().end()},
          .tls = options_.tls,
          .head_address = options_.head_address,
          .data_fd = listener.fd(),
          .lease_fd = lease_.fd(),
          .environment = {start.environment().begin(), start.environment().end()},
      }));
    } catch (const Error& e) {
      report_exit(start, 1, "node '" + options_.node_id + "' " + e.what(), nullptr);
      return;
    }
    listener = net::Socket();  // the child has it now
    const pid_t pid = process->pid();
    {
      std::lock_guard lock(mutex_);
      processes_.emplace(pid,
                         Running{pid, start.job_id(), start.program_sha256(), start.bundle_sha256(),
                                 MemoryWatch(pid, start.memory_limit_bytes(), options_.node_id)});
      // The session ended (or the job was stopped) while this process started.
      if (generation_ != generation ||
          stopped_runs_.count(run_of(start.job_id(), start.attempt()))) {
        process->kill_group();
      }
    }
    const std::string result_bytes = relay_output(start, *process);
    // Waited for without reaping, so that its pid (and process group) cannot
    // be reused while the memory checker may still look at it.
    process->wait_until_ended();
    process->kill_group();  // what it started and left behind in its group
    std::string memory_verdict;
    {
      std::lock_guard lock(mutex_);
      memory_verdict = processes_.at(pid).memory.verdict();
      processes_.erase(pid);
    }
    const int status = process->reap();
    {
      std::lock_guard lock(mutex_);
      reaped_.notify_all();
    }
    report_ended(start, status, result_bytes, memory_verdict);
  }

  // Reports how a reaped task process ended: its wait `status`, the exit
  // report it sent (serialized, empty if none) and why its memory watch killed
  // it (empty unless it did), with the cause a user can act on.
  void report_ended(const rpc::StartProcess& start, int status, const std::string& result_bytes,
                    const std::string& memory_verdict) {
    rpc::ExitReport details;
    const bool has_details = !result_bytes.empty() && details.ParseFromString(result_bytes);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::string error;
    if (!memory_verdict.empty()) {
      error = memory_verdict;
      details.set_error(error);  // over whatever the process said as it was killed
      details.set_over_memory_limit(true);
    } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && lease_.expired()) {
      // Killed by this worker or by itself: the lease stays expired until
      // the next session, which starts once every process is reaped.
      error = "the task process on node '" + options_.node_id + "' was stopped: " + lease_ran_out();
    } else if (WIFSIGNALED(status)) {
      error = "the task process on node '" + options_.node_id + "' was killed by signal " +
              std::to_string(WTERMSIG(status));
    } else if (code == 127) {
      error = "node '" + options_.node_id + "' could not execute the job's program";
    }
    report_exit(start, code, error, has_details || !memory_verdict.empty() ? &details : nullptr);
  }

  // Sends the output lines and progress reports of `process` to the head
  // until it closes its pipes; returns its exit report (serialized), empty if
  // it sent none.
  std::string relay_output(const rpc::StartProcess& start, LaunchedProcess& process) {
    RelaySink sink{
        .output =
            [&](const rpc::OutputReport& report) {
              rpc::Empty reply;
              const grpc::Status status =
                  stub_->ReportOutput(net::make_context(options_.token).get(), report, &reply);
              if (!status.ok()) {
                spdlog::warn("job {}: {} output lines did not reach the head: {}", start.job_id(),
                             report.lines_size(), status.error_message());
              }
            },
        .progress =
            [&](rpc::ProgressReport progress) {
              progress.set_attempt(start.attempt());
              rpc::Empty reply;
              stub_->ReportProgress(net::make_context(options_.token).get(), progress, &reply);
            },
    };
    return OutputRelay(start.job_id(), start.process_index(), options_.node_id, std::move(sink))
        .relay(process);
  }

  // Runs `work` on a thread of its own, off the command stream; joins the
  // threads that have finished. REQUIRES: mutex_ held.
  void spawn(std::function<void()> work) {
    std::erase_if(starters_, [](Starter& starter) {
      if (!starter.done->load()) return false;
      starter.thread.join();
      return true;
    });
    auto done = std::make_shared<std::atomic<bool>>(false);
    starters_.push_back({std::thread([work = std::move(work), done] {
                           work();
                           done->store(true);
                         }),
                         done});
  }

  // A run of a job: a restarted job's next run starts although the previous
  // one was stopped.
  static std::string run_of(const std::string& job_id, int attempt) {
    return job_id + "#" + std::to_string(attempt);
  }

  // The run's processes still to start will not start, and the job's
  // reserved ports are closed. REQUIRES: mutex_ held.
  void cancel_unstarted(const std::string& job_id, int attempt) {
    stopped_runs_.insert(run_of(job_id, attempt));
    for (auto it = listeners_.begin(); it != listeners_.end();) {
      it = it->first.rfind(job_id + "/", 0) == 0 ? listeners_.erase(it) : std::next(it);
    }
  }

  // SIGTERM to the job's processes, which stop their sources and finish what
  // is in flight; those still running after kDrainTimeout are killed. Those
  // not started yet will not start.
  void drain_job(const std::string& job_id, int attempt) {
    std::lock_guard lock(mutex_);
    cancel_unstarted(job_id, attempt);
    for (const auto& [pid, running] : processes_) {
      if (running.job_id == job_id) ::kill(-pid, SIGTERM);
    }
    spawn([this, job_id, attempt] {
      std::unique_lock lock(mutex_);
      const bool drained = reaped_.wait_for(lock, kDrainTimeout, [&] {
        return std::none_of(processes_.begin(), processes_.end(),
                            [&](const auto& p) { return p.second.job_id == job_id; });
      });
      if (!drained) {
        spdlog::warn("job {} did not end within {} s of its stop; killing its processes", job_id,
                     kDrainTimeout.count());
        lock.unlock();
        kill_job(job_id, attempt);
      }
    });
  }

  void kill_job(const std::string& job_id, int attempt) {
    std::lock_guard lock(mutex_);
    cancel_unstarted(job_id, attempt);
    for (const auto& [pid, running] : processes_) {
      if (running.job_id == job_id) ::kill(-pid, SIGKILL);
    }
  }

  // Kills every task process, and those still starting once they have
  // started. REQUIRES: mutex_ held.
  void kill_processes() {
    ++generation_;
    for (const auto& [pid, running] : processes_) ::kill(-pid, SIGKILL);
  }

  void kill_all() {
    std::vector<Starter> starters;
    {
      std::lock_guard lock(mutex_);
      kill_processes();
      listeners_.clear();
      stopped_runs_.clear();  // a new session brings no commands of the old one's jobs
      starters.swap(starters_);
    }
    for (auto& starter : starters) starter.thread.join();
  }

  WorkerOptions options_;
  ProgramStore programs_;
  UnpackedBundles bundles_;
  Lease lease_;                                      // of this session's task processes
  std::unique_ptr<rpc::ClusterService::Stub> stub_;  // of this session
  std::mutex fetch_mutex_;
  std::mutex mutex_;
  std::condition_variable changed_, reaped_;
  bool stopping_ = false, heartbeat_stop_ = false;
  grpc::ClientContext* session_ = nullptr;
  std::map<std::string, net::Socket> listeners_;
  std::map<pid_t, Running> processes_;
  struct Starter {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;  // set as its work returns
  };
  std::vector<Starter> starters_;
  std::thread memory_checker_;
  std::uint64_t generation_ = 0;        // sessions with the head so far
  bool ever_joined_ = false;            // only the run() thread touches it
  std::set<std::string> stopped_runs_;  // job_id#attempt
};

Worker::Worker(WorkerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Worker::~Worker() = default;
void Worker::run() { impl_->run(); }
void Worker::stop() { impl_->stop(); }

}  // namespace sage::cluster
