#include "runtime/process_job.hpp"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>

#include "runtime/current_task.hpp"
#include "runtime/task_builder.hpp"
#include "sage/detail/crash_point.hpp"
#include "sage/error.hpp"

namespace sage::runtime {
namespace {

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

// What a task's failure outside user code says.
std::string describe_task_failure(const std::string& task, const std::string& node_id,
                                  const std::string& what) {
  return "task " + task + " on node " + node_id + ": " + what;
}

// Puts the calling thread under `scheduling` (options.hpp). A system that
// refuses (a sandbox's seccomp filter) costs only speed, so it is logged, not
// raised.
void apply_task_scheduling(TaskScheduling scheduling) {
  if (scheduling != TaskScheduling::kThroughput) return;
  const sched_param param{};
  if (const int error = pthread_setschedparam(pthread_self(), SCHED_BATCH, &param); error != 0) {
    spdlog::debug(
        "task thread stays under the default scheduling policy: SCHED_BATCH refused "
        "({})",
        std::strerror(error));
  }
}

// A task of another process as the producers here see it: a push that loses
// its peer (PeerLostError: the process ended, most often because it failed
// first) fails the job as a consequence and unwinds the producing task as a
// cancelled one. Other errors of a push (a batch over the frame limit) are
// the task's own: they fail the job as a cause.
class RemoteTask final : public detail::MessageSink {
 public:
  RemoteTask(detail::MessageSink& sink, JobControl& control, const std::string& node_id)
      : sink_(sink), control_(control), node_id_(node_id) {}

  void push(detail::Message message) override {
    try {
      sink_.push(std::move(message));
    } catch (const detail::PeerLostError& e) {
      const std::string* task = current_task();
      control_.fail(describe_task_failure(task != nullptr ? *task : "?", node_id_, e.what()),
                    FailureKind::kConsequence);
      throw detail::JobCancelledError{};
    }
  }

 private:
  detail::MessageSink& sink_;
  JobControl& control_;
  const std::string& node_id_;
};

std::string describe(const detail::OperatorError& e) {
  std::string where = "operator '" + e.operator_name + "' instance " +
                      std::to_string(e.parallel_index) + "/" + std::to_string(e.parallelism);
  if (!e.node_id.empty()) where += " on node " + e.node_id;
  return where + ": " + e.message;
}

}  // namespace

// The tasks' side of checkpoints in this process: snapshots go to a writer
// thread that stores them (durably, which takes a while) and then
// acknowledges them, so that the tasks go on with their records meanwhile.
class ProcessJob::Checkpointing final : public TaskCheckpointing {
 public:
  Checkpointing(CheckpointLink& link, const ExecutionConfig& config, std::uint64_t restore_from,
                JobControl& control)
      : link_(link), config_(config), restore_from_(restore_from), control_(control) {}
  ~Checkpointing() override { stop(); }

  CheckpointMode mode() const override { return config_.checkpoint_mode; }
  std::size_t alignment_buffer_batches() const override { return config_.alignment_buffer_batches; }
  void store(std::uint64_t id, const checkpoint::TaskKey& task, const std::string& task_name,
             std::string bytes, std::int64_t alignment_ns) override {
    std::lock_guard lock(mutex_);
    pending_.push_back(Snapshot{id, task, task_name, std::move(bytes), alignment_ns});
    wake_.notify_one();
  }
  std::string spare_buffer(const checkpoint::TaskKey& task) override {
    std::lock_guard lock(mutex_);
    auto node = spare_.extract(task);
    return node ? std::move(node.mapped()) : std::string();
  }
  void decline(std::uint64_t id, const checkpoint::TaskKey& task,
               const std::string& reason) override {
    link_.declined(id, task, reason);
  }
  void finished(const checkpoint::TaskKey& task) override {
    // After the snapshots before it: the coordinator must not see the end
    // of a task whose last checkpoint is still being written.
    std::lock_guard lock(mutex_);
    pending_.push_back(Snapshot{0, task, {}, {}, 0});
    wake_.notify_one();
  }
  std::optional<std::string> restore_bytes(const checkpoint::TaskKey& task) override {
    if (restore_from_ == 0) return std::nullopt;
    return link_.storage().read_task_snapshot(restore_from_, task);
  }

  void start() {
    writer_ = std::thread([this] { write_snapshots(); });
  }
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      wake_.notify_one();
    }
    if (writer_.joinable()) writer_.join();
  }

 private:
  struct Snapshot {
    std::uint64_t id = 0;  // 0: the task has ended
    checkpoint::TaskKey task;
    std::string task_name;
    std::string bytes;
    std::int64_t alignment_ns = 0;
  };

  void write_snapshots() {
    std::unique_lock lock(mutex_);
    while (true) {
      wake_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;
      Snapshot snapshot = std::move(pending_.front());
      pending_.pop_front();
      lock.unlock();
      if (snapshot.id == 0) {
        link_.finished(snapshot.task);
      } else if (!control_.cancelled()) {
        try {
          link_.storage().write_task_snapshot(snapshot.id, snapshot.task, snapshot.bytes);
          detail::crash_point("after-store", snapshot.id, snapshot.task_name);
          link_.acknowledged(snapshot.id, snapshot.task, snapshot.bytes.size(),
                             snapshot.alignment_ns);
        } catch (const Error& e) {
          link_.declined(snapshot.id, snapshot.task,
                         std::string("its snapshot could not be stored: ") + e.what());
        }
      }
      lock.lock();
      if (snapshot.id != 0) spare_[snapshot.task] = std::move(snapshot.bytes);
    }
  }

  CheckpointLink& link_;
  const ExecutionConfig& config_;
  const std::uint64_t restore_from_;
  JobControl& control_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Snapshot> pending_;
  // Per task, the bytes of its last stored snapshot: spare_buffer() lends
  // their memory to its next one.
  std::map<checkpoint::TaskKey, std::string> spare_;
  bool stopping_ = false;
  std::thread writer_;
};

ProcessJob::ProcessJob(std::shared_ptr<const detail::LogicalGraph> graph, ExecutionConfig config,
                       std::string job_id, Placement placement)
    : graph_(std::move(graph)),
      config_(config),
      job_id_(std::move(job_id)),
      node_id_(placement.node_id.empty() ? host_name() : placement.node_id),
      plan_(graph::PhysicalPlan::build(*graph_, config_)),
      placement_(std::move(placement)) {
  for (const auto& node : graph_->nodes) {
    auto& per_instance = metrics_.emplace_back();
    for (int i = 0; i < node.parallelism; ++i) {
      per_instance.push_back(std::make_unique<detail::InstanceMetrics>());
    }
  }
  for (const auto& chain : plan_.chains()) {
    auto& per_instance = queues_.emplace_back(chain.parallelism);
    for (int i = 0; i < chain.parallelism; ++i) {
      if (!is_local(chain.id, i)) continue;
      per_instance[i] =
          std::make_unique<InputQueue>(config_.channel_capacity, metrics(chain.nodes.front(), i));
      control_.watch(*per_instance[i]);
    }
  }
  TaskContext context;
  context.graph = graph_.get();
  context.plan = &plan_;
  context.config = &config_;
  context.job_id = job_id_;
  context.node_id = node_id_;
  context.stop_requested = &control_.stop_flag();
  context.gpus = placement_.gpus;
  context.metrics = [this](int node, int instance) -> detail::InstanceMetrics& {
    return metrics(node, instance);
  };
  context.sink = [this](int chain, int instance) -> detail::MessageSink& {
    if (is_local(chain, instance)) return *queues_[chain][instance];
    return *remote_tasks_.emplace_back(
        std::make_unique<RemoteTask>(placement_.remote_sink(chain, instance), control_, node_id_));
  };
  for (const auto& chain : plan_.chains()) {
    ended_.push_back(std::make_unique<std::atomic<bool>[]>(chain.parallelism));
    for (int i = 0; i < chain.parallelism; ++i) {
      if (is_local(chain.id, i)) {
        tasks_.push_back(build_task(context, chain.id, i, queues_[chain.id][i].get()));
      }
    }
  }
}

bool ProcessJob::is_local(int chain, int instance) const {
  return !placement_.is_local || placement_.is_local(chain, instance);
}

ProcessJob::~ProcessJob() {
  if (!threads_.empty() && !result_) {
    control_.request_stop();
    wait();
  }
}

void ProcessJob::enable_checkpoints(CheckpointLink& link, std::uint64_t restore_from) {
  checkpointing_ = std::make_unique<Checkpointing>(link, config_, restore_from, control_);
  for (auto& task : tasks_) task.checkpointing = checkpointing_.get();
}

namespace {

void post_to(std::vector<Task>& tasks, detail::Message::Kind kind, std::uint64_t id,
             bool sources_only) {
  for (auto& task : tasks) {
    if (!sources_only || task.is_source) task.queue->post(detail::Message::command(kind, id));
  }
}

}  // namespace

void ProcessJob::trigger_checkpoint(std::uint64_t id) {
  post_to(tasks_, detail::Message::Kind::kTriggerCheckpoint, id, true);
}
void ProcessJob::trigger_final_checkpoint(std::uint64_t id) {
  post_to(tasks_, detail::Message::Kind::kFinalCheckpoint, id, false);
}
void ProcessJob::checkpoint_complete(std::uint64_t id) {
  post_to(tasks_, detail::Message::Kind::kCheckpointComplete, id, false);
}
void ProcessJob::abort_checkpoint(std::uint64_t id) {
  post_to(tasks_, detail::Message::Kind::kCheckpointAborted, id, false);
}

void ProcessJob::start() {
  if (checkpointing_) checkpointing_->start();
  started_ = std::chrono::steady_clock::now();
  spdlog::debug("job {} ({}): starting {} tasks, plan {}", graph_->job_name, job_id_, tasks_.size(),
                plan_.fingerprint());
  threads_.reserve(tasks_.size());
  for (auto& task : tasks_) {
    threads_.emplace_back([this, &task] {
      const CurrentTaskScope current(task.name);
      apply_task_scheduling(config_.task_scheduling);
      try {
        task.run(control_, config_);
      } catch (const detail::JobCancelledError&) {
        // Another task failed first; its error is the job's.
      } catch (const detail::OperatorError& e) {
        control_.fail(describe(e));
      } catch (const std::exception& e) {
        control_.fail(describe_task_failure(task.name, node_id_, e.what()));
      }
      ended_[task.chain][task.instance].store(true, std::memory_order_release);
    });
  }
}

const JobResult& ProcessJob::wait() {
  if (result_) return *result_;
  for (auto& t : threads_) t.join();
  if (checkpointing_) checkpointing_->stop();
  result_ = collect_result();
  if (result_->state == JobState::kFailed) {
    spdlog::debug("job {} ({}) failed: {}", graph_->job_name, job_id_, result_->error);
  }
  return *result_;
}

JobResult ProcessJob::collect_result() const {
  JobResult result = statistics();
  if (auto error = control_.error()) {
    result.state = JobState::kFailed;
    result.error = *error;
  } else {
    result.state = control_.stop_requested() ? JobState::kStopped : JobState::kFinished;
  }
  return result;
}

JobResult ProcessJob::statistics() const {
  JobResult result;
  result.job_id = job_id_;
  result.job_name = graph_->job_name;
  result.duration_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  const int pid = static_cast<int>(getpid());
  for (const auto& node : graph_->nodes) {
    for (int i = 0; i < node.parallelism; ++i) {
      if (!is_local(plan_.chain_of(node.id), i)) continue;
      const auto& m = *metrics_[node.id][i];
      InstanceStats s;
      s.operator_name = node.name;
      s.operator_id = node.id;
      s.parallel_index = i;
      s.parallelism = node.parallelism;
      s.node_id = node_id_;
      s.process_id = pid;
      s.records_in = m.records_in.load();
      s.records_out = m.records_out.load();
      s.busy_seconds = static_cast<double>(m.busy_ns.load()) * 1e-9;
      // A consistent pair: no wait began or ended while it was read.
      std::uint64_t blocked_ns = 0, version = 0;
      std::int64_t since = 0;
      do {
        version = m.blocked_version.load();
        since = m.blocked_since_ns.load();
        blocked_ns = m.blocked_ns.load();
      } while ((version & 1) != 0 || m.blocked_version.load() != version);
      if (since != 0) {
        const std::int64_t now = detail::steady_ns(std::chrono::steady_clock::now());
        blocked_ns += static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - since));
      }
      s.blocked_seconds = static_cast<double>(blocked_ns) * 1e-9;
      s.errors = m.errors.load();
      s.queue_batches = m.queue_batches.load();
      s.queue_peak_batches = m.queue_peak_batches.load();
      s.running = !ended_[plan_.chain_of(node.id)][i].load(std::memory_order_acquire);
      s.queue_capacity_batches = m.queue_capacity_batches.load();
      s.user_metrics = m.user.snapshot();
      result.instances.push_back(std::move(s));
    }
  }
  return result;
}

}  // namespace sage::runtime
