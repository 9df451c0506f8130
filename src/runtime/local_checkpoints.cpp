#include "runtime/local_checkpoints.hpp"

#include <filesystem>

#include <spdlog/spdlog.h>

namespace sage::runtime {

std::vector<checkpoint::TaskKey> tasks_of(const graph::PhysicalPlan& plan) {
  std::vector<checkpoint::TaskKey> tasks;
  for (const auto& chain : plan.chains()) {
    for (int i = 0; i < chain.parallelism; ++i) tasks.push_back({chain.id, i});
  }
  return tasks;
}

LocalCheckpoints::LocalCheckpoints(ProcessJob& job, const ExecutionConfig& config,
                                   const std::string& base)
    : job_(job), storage_(checkpoint::job_checkpoint_root(base, job.id())) {
  checkpoint::CoordinatorActions& actions = *this;
  coordinator_ = std::make_unique<checkpoint::CheckpointCoordinator>(
      checkpoint::CoordinatorSettings::from(config), job.id(), job.plan().fingerprint(),
      tasks_of(job.plan()), storage_, actions, 1, checkpoint::Clock::now());
  job.enable_checkpoints(*this);
}

LocalCheckpoints::~LocalCheckpoints() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    wake_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  std::error_code ec;
  std::filesystem::remove_all(storage_.root(), ec);
  if (ec) spdlog::warn("cannot remove the checkpoints in {}: {}", storage_.root(), ec.message());
}

void LocalCheckpoints::start() {
  thread_ = std::thread([this] { run(); });
}

checkpoint::CheckpointStats LocalCheckpoints::stats() const {
  std::lock_guard lock(mutex_);
  return coordinator_->stats();
}

void LocalCheckpoints::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    coordinator_->poll(checkpoint::Clock::now());
    wake_.wait_until(lock, coordinator_->next_poll());
  }
}

void LocalCheckpoints::acknowledged(std::uint64_t id, const checkpoint::TaskKey& task,
                                    std::uint64_t bytes, std::int64_t alignment_ns) {
  std::lock_guard lock(mutex_);
  coordinator_->acknowledge(id, task, bytes, alignment_ns, checkpoint::Clock::now());
  wake_.notify_all();
}

void LocalCheckpoints::declined(std::uint64_t id, const checkpoint::TaskKey& task,
                                const std::string& reason) {
  std::lock_guard lock(mutex_);
  coordinator_->decline(id, task, reason, checkpoint::Clock::now());
  wake_.notify_all();
}

void LocalCheckpoints::finished(const checkpoint::TaskKey& task) {
  std::lock_guard lock(mutex_);
  coordinator_->task_finished(task, checkpoint::Clock::now());
  wake_.notify_all();
}

}  // namespace sage::runtime
