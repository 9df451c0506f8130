// Shared by all tasks of one job in this process: whether the job should stop
// (gracefully: sources end, records drain) or is cancelled (a task failed:
// every queue is aborted so no thread stays blocked), and the first error.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "runtime/input_queue.hpp"

namespace sage::runtime {

class JobControl {
 public:
  // Queues to abort on cancel; they must outlive this object's use.
  void watch(InputQueue& queue) { queues_.push_back(&queue); }
  // Also run on cancel, to wake threads blocked elsewhere (e.g. on a socket).
  // Register before the job starts.
  void on_cancel(std::function<void()> hook) { hooks_.push_back(std::move(hook)); }

  void request_stop() { stop_.store(true, std::memory_order_relaxed); }
  bool stop_requested() const { return stop_.load(std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

  // Records the job's error (the first one wins) and cancels the job.
  void fail(std::string error) {
    {
      std::lock_guard lock(mutex_);
      if (!error_) error_ = std::move(error);
    }
    cancel();
  }
  void cancel() {
    cancelled_.store(true, std::memory_order_relaxed);
    for (auto* q : queues_) q->abort();
    for (auto& hook : hooks_) hook();
  }
  std::optional<std::string> error() const {
    std::lock_guard lock(mutex_);
    return error_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mutex_;
  std::optional<std::string> error_;
  std::vector<InputQueue*> queues_;
  std::vector<std::function<void()>> hooks_;
};

}  // namespace sage::runtime
