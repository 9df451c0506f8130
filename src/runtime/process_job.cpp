#include "runtime/process_job.hpp"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include "runtime/current_task.hpp"
#include "runtime/task_builder.hpp"
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
    if (chain.is_source) continue;
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

void ProcessJob::start() {
  started_ = std::chrono::steady_clock::now();
  spdlog::debug("job {} ({}): starting {} tasks, plan {}", graph_->job_name, job_id_, tasks_.size(),
                plan_.fingerprint());
  threads_.reserve(tasks_.size());
  for (auto& task : tasks_) {
    threads_.emplace_back([this, &task] {
      const CurrentTaskScope current(task.name);
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
