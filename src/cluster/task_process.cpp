#include "cluster/task_process.hpp"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include <signal.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "cluster/cluster_config.hpp"
#include "cluster/job_info.hpp"
#include "cluster/lease.hpp"
#include "cluster/memory_watch.hpp"
#include "cluster/task_checkpoints.hpp"
#include "cluster/task_output.hpp"
#include "graph/physical_plan.hpp"
#include "net/data_plane.hpp"
#include "net/rpc.hpp"
#include "runtime/process_job.hpp"

namespace sage::cluster {
namespace {

constexpr auto kPeerConnectTimeout = std::chrono::seconds(30);

// A line for the log of the node that runs this process, not for the job's
// output: over the result pipe to the worker, which logs it (spdlog here when
// no worker started this process).
void log_for_the_node(const std::string& line) {
  const char* result_fd = std::getenv(kResultFdVariable);
  if (result_fd == nullptr ||
      !write_result_frame(std::atoi(result_fd), ResultFrameKind::kWarning, line)) {
    spdlog::warn("{}", line);
  }
}

// Delivers frames from peers into the consumer tasks of this process.
class QueueDelivery final : public net::FrameHandler {
 public:
  explicit QueueDelivery(runtime::ProcessJob& job) : job_(job) {
    for (const auto& chain : job.plan().chains()) {
      auto& per_instance = channel_edges_.emplace_back();
      for (int i = 0; i < chain.parallelism; ++i) {
        auto& edges = per_instance.emplace_back();
        if (job.queue(chain.id, i) == nullptr) continue;
        for (const auto& c : job.plan().input_channels(chain.id, i)) {
          edges.push_back(job.graph().edges[c.edge].factory.get());
        }
      }
    }
  }

  void on_batch(const net::FrameHeader& h, std::string_view payload) override {
    queue_of(h).push(detail::Message::of_batch(h.channel, edge_of(h).decode(payload)));
  }
  void on_end_of_stream(const net::FrameHeader& h) override {
    edge_of(h);  // validates the address
    queue_of(h).push(detail::Message::end_of_stream(h.channel));
  }
  void on_barrier(const net::FrameHeader& h, std::uint64_t checkpoint) override {
    edge_of(h);  // validates the address
    queue_of(h).push(detail::Message::barrier(h.channel, checkpoint));
  }
  // A peer's connection broke or misbehaved: most often because that peer
  // failed first, whose error is the job's cause.
  void on_error(const std::string& message) override {
    job_.fail(message, runtime::FailureKind::kConsequence);
  }
  // This process's own failure: the cause.
  void on_local_failure(const std::string& message) override {
    job_.fail(message, runtime::FailureKind::kCause);
  }
  void on_rejected(const std::string& line) override { log_for_the_node(line); }

 private:
  const detail::EdgeFactory& edge_of(const net::FrameHeader& h) const {
    if (h.chain >= channel_edges_.size() || h.instance >= channel_edges_[h.chain].size() ||
        h.channel >= channel_edges_[h.chain][h.instance].size()) {
      throw Error("a peer addressed channel " + std::to_string(h.channel) + " of task " +
                  std::to_string(h.chain) + "/" + std::to_string(h.instance) +
                  ", which does not run in this process");
    }
    return *channel_edges_[h.chain][h.instance][h.channel];
  }
  runtime::InputQueue& queue_of(const net::FrameHeader& h) {
    return *job_.queue(static_cast<int>(h.chain), static_cast<int>(h.instance));
  }

  runtime::ProcessJob& job_;
  std::vector<std::vector<std::vector<const detail::EdgeFactory*>>> channel_edges_;
};

}  // namespace

std::string TaskAssignment::encode() const {
  static constexpr char kHex[] = "0123456789abcdef";
  const std::string bytes = serialize(*this);
  std::string text;
  text.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    text.push_back(kHex[c >> 4]);
    text.push_back(kHex[c & 15]);
  }
  return text;
}

TaskAssignment TaskAssignment::decode(std::string_view text) {
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw Error("task assignment is not hex text");
  };
  if (text.size() % 2 != 0) throw Error("task assignment has an odd number of hex digits");
  std::string bytes(text.size() / 2, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] = static_cast<char>(nibble(text[2 * i]) * 16 + nibble(text[2 * i + 1]));
  }
  return deserialize<TaskAssignment>(bytes);
}

namespace {
std::string& plan_mismatch_advice() {
  static std::string advice =
      "building the graph must be deterministic; keep code that depends on time, randomness or "
      "input files after submit(), or guard it with sage::is_task_process()";
  return advice;
}
}  // namespace

void set_plan_mismatch_advice(std::string advice) { plan_mismatch_advice() = std::move(advice); }

TaskProcessResult run_task_process(std::shared_ptr<const detail::LogicalGraph> graph,
                                   const ExecutionConfig& config, const TaskAssignment& assignment,
                                   net::Socket listener, const net::TlsFiles& tls,
                                   const std::function<void(const RunningTasks*)>& on_running) {
  const graph::PhysicalPlan plan = graph::PhysicalPlan::build(*graph, config);
  if (plan.fingerprint() != assignment.fingerprint) {
    throw InvalidPlanError("this process built a different dataflow (plan " + plan.fingerprint() +
                           ") than the one submitted (plan " + assignment.fingerprint +
                           "): " + plan_mismatch_advice());
  }
  std::vector<int> first_task_of_chain;
  int tasks = 0;
  for (const auto& chain : plan.chains()) {
    first_task_of_chain.push_back(tasks);
    tasks += chain.parallelism;
  }
  if (static_cast<int>(assignment.process_of_task.size()) != tasks) {
    throw Error("task assignment covers " + std::to_string(assignment.process_of_task.size()) +
                " tasks but the plan has " + std::to_string(tasks));
  }
  const auto process_of = [&](int chain, int instance) {
    return assignment.process_of_task[first_task_of_chain[chain] + instance];
  };

  const net::PeerIdentity identity{assignment.job_id, assignment.fingerprint, assignment.token,
                                   "the task process on node '" + assignment.node_id +
                                       "' (process " + std::to_string(assignment.process_index) +
                                       ")",
                                   assignment.attempt};
  std::shared_ptr<const net::TlsContext> tls_server, tls_client;
  if (tls.enabled()) {
    tls_server = net::TlsContext::server(tls);
    tls_client = net::TlsContext::client(tls);
  }
  const auto deadline = std::chrono::steady_clock::now() + kPeerConnectTimeout;
  // One connection per consumer task in another process, keyed by (chain,
  // instance): a task whose queue is full then stops only its own
  // connection, as it stops only its own producers in one process.
  std::map<std::pair<int, int>, std::unique_ptr<net::PeerConnection>> peers;
  std::vector<std::unique_ptr<net::RemoteTaskSink>> remote_sinks;

  runtime::Placement placement;
  placement.node_id = assignment.node_id;
  placement.is_local = [&](int chain, int instance) {
    return process_of(chain, instance) == assignment.process_index;
  };
  placement.gpus = [&](int chain, int instance) {
    const auto task = static_cast<std::size_t>(first_task_of_chain[chain] + instance);
    return task < assignment.gpus_of_task.size() ? assignment.gpus_of_task[task]
                                                 : std::vector<int>{};
  };
  placement.remote_sink = [&](int chain, int instance) -> detail::MessageSink& {
    const int process = process_of(chain, instance);
    auto& peer = peers[{chain, instance}];
    if (!peer) {
      peer = std::make_unique<net::PeerConnection>(
          net::Address::parse(assignment.data_addresses.at(process)), identity, deadline,
          tls_client);
    }
    std::vector<const detail::EdgeFactory*> edges;
    for (const auto& c : plan.input_channels(chain, instance)) {
      edges.push_back(graph->edges[c.edge].factory.get());
    }
    remote_sinks.push_back(
        std::make_unique<net::RemoteTaskSink>(*peer, chain, instance, std::move(edges)));
    return *remote_sinks.back();
  };

  runtime::ProcessJob job(graph, config, assignment.job_id, std::move(placement));
  std::unique_ptr<TaskCheckpoints> checkpoints;
  if (assignment.checkpoints) {
    const char* head = std::getenv(kHeadAddressVariable);
    if (head == nullptr || *head == '\0') {
      throw Error(std::string(kHeadAddressVariable) +
                  " is not set: a task process of a job with checkpoints is started by a worker");
    }
    checkpoints = std::make_unique<TaskCheckpoints>(job, assignment, head, tls);
  }
  QueueDelivery delivery(job);
  auto receiver =
      std::make_unique<net::DataReceiver>(std::move(listener), identity, delivery, tls_server);
  // A failed job must not say goodbye: peers then see the connection end
  // early and fail too, instead of waiting for records that will not come.
  job.on_cancel([&peers] {
    for (auto& [task, peer] : peers) peer->shutdown();
  });
  receiver->start();
  // Greeted before the tasks run, so that every consumer knows its producers
  // from the start and fails when one dies, even one that had sent nothing.
  // A peer that does not accept shows when a task first sends to it, with
  // the task's name.
  for (auto& [task, peer] : peers) {
    try {
      peer->greet();
    } catch (const Error&) {
    }
  }
  job.start();
  const RunningTasks running{[&job] { job.request_stop(); }, [&job] { return job.statistics(); }};
  // Withdrawn before `job` and `running` go, however this scope ends.
  const auto withdraw = [&on_running](const RunningTasks*) {
    if (on_running) on_running(nullptr);
  };
  const std::unique_ptr<const RunningTasks, decltype(withdraw)> withdrawn(&running, withdraw);
  if (on_running) on_running(&running);
  TaskProcessResult result{job.wait()};
  result.consequence =
      result.state == JobState::kFailed && job.failure_kind() == runtime::FailureKind::kConsequence;
  // Every local task has ended, so nothing more that this process needs can
  // arrive; stop receiving before the peers (and the cancel hook's view of
  // them) go away.
  receiver.reset();
  peers.clear();  // goodbyes, after everything this process sent
  checkpoints.reset();
  return result;
}

bool write_result_frame(int fd, ResultFrameKind kind, const std::string& payload) {
  // Frames over PIPE_BUF bytes could interleave with another thread's.
  static std::mutex one_writer;
  const std::lock_guard lock(one_writer);
  std::string frame(5, '\0');
  frame[0] = static_cast<char>(kind);
  const auto length = static_cast<std::uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) frame[1 + i] = static_cast<char>((length >> (8 * i)) & 0xff);
  frame += payload;
  std::string_view rest(frame);
  while (!rest.empty()) {
    const ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool take_result_frame(std::string& buffer, ResultFrameKind* kind, std::string* payload) {
  if (buffer.size() < 5) return false;
  if (buffer[0] != static_cast<char>(ResultFrameKind::kProgress) &&
      buffer[0] != static_cast<char>(ResultFrameKind::kWarning) &&
      buffer[0] != static_cast<char>(ResultFrameKind::kExit)) {
    throw Error("a task process wrote something other than a result frame to its result pipe");
  }
  std::uint32_t length = 0;
  for (int i = 0; i < 4; ++i) {
    length |= static_cast<std::uint32_t>(static_cast<unsigned char>(buffer[1 + i])) << (8 * i);
  }
  if (length > static_cast<std::uint32_t>(net::kMaxRpcMessageBytes)) {
    throw Error("a task process reported " + std::to_string(length) +
                " bytes of statistics, over the limit");
  }
  if (buffer.size() < 5 + std::size_t{length}) return false;
  *kind = static_cast<ResultFrameKind>(buffer[0]);
  payload->assign(buffer, 5, length);
  buffer.erase(0, 5 + std::size_t{length});
  return true;
}

namespace {

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
  void update(const RunningTasks* tasks, const std::string& job_id, int process_index) {
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
    while (!state_->changed.wait_for(lock, kProgressInterval, [&] { return !state_->tasks; })) {
      JobResult now = state_->tasks->statistics();
      rpc::ProgressReport report = progress_report(now, before ? &*before : nullptr);
      report.set_job_id(job_id);
      report.set_process_index(process_index);
      report.set_resident_bytes(resident_bytes(getpid()).value_or(0));
      if (!write_result_frame(result_fd_, ResultFrameKind::kProgress, report.SerializeAsString())) {
        return;  // the worker is gone; it kills this process
      }
      before = std::move(now);
    }
  }

  struct State {
    std::mutex mutex;
    std::condition_variable changed;
    std::optional<RunningTasks> tasks;  // while they run
    bool stop_requested = false;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
  int result_fd_;
  std::thread reporter_;
};

}  // namespace

[[noreturn]] void run_as_task_process(const std::shared_ptr<detail::LogicalGraph>& graph,
                                      const ExecutionConfig& config) {
  const char* result_fd_text = std::getenv(kResultFdVariable);
  const int result_fd = result_fd_text != nullptr ? std::atoi(result_fd_text) : -1;
  rpc::ExitReport report;
  int code = 0;
  try {
    // Started by a worker: ends itself when the worker loses the head (fencing).
    if (const char* lease = std::getenv(kLeaseFdVariable); lease != nullptr) {
      watch_lease(std::atoi(lease));
    }
    const TaskOutput output;  // lines written by tasks say which
    const auto assignment = TaskAssignment::decode(std::getenv(kAssignmentVariable));
    TaskProcessResult result;
    {
      TaskProcessControl control(result_fd);
      result = run_task_process(
          graph, config, assignment, net::Socket(std::atoi(std::getenv(kDataFdVariable))),
          net::TlsFiles::from_environment(), [&](const RunningTasks* tasks) {
            control.update(tasks, assignment.job_id, assignment.process_index);
          });
    }
    for (const auto& s : result.instances) to_message(s, report.add_instances());
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
  write_result_frame(result_fd, ResultFrameKind::kExit, report.SerializeAsString());
  ::close(result_fd);
  std::exit(code);
}

}  // namespace sage::cluster
