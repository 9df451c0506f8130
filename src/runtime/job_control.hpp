// Shared by all tasks of one job in this process: whether the job should stop
// (gracefully: sources end, records drain) or is cancelled (a task failed:
// every queue is aborted so no thread stays blocked), and the job's error:
// the first cause, else the first consequence.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "runtime/input_queue.hpp"

namespace sage::runtime {

// What a failure is to the job: a cause (an operator's exception, a plan or
// partition error) or a consequence of a failure elsewhere (another process's
// connection broke because that process failed first). The cause is the
// error to report, whichever arrived first.
enum class FailureKind { kCause, kConsequence };

class JobControl {
 public:
  // Queues to abort on cancel; they must outlive this object's use.
  void watch(InputQueue& queue) { queues_.push_back(&queue); }
  // Also run on cancel, to wake threads blocked elsewhere (e.g. on a socket).
  // Register before the job starts.
  void on_cancel(std::function<void()> hook) { hooks_.push_back(std::move(hook)); }

  void request_stop() { stop_.store(true, std::memory_order_relaxed); }
  bool stop_requested() const { return stop_.load(std::memory_order_relaxed); }
  // The flag itself, for RuntimeContext::stop_requested.
  const std::atomic<bool>& stop_flag() const { return stop_; }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

  // Records the job's error and cancels the job. The first cause wins; a
  // consequence is kept only until a cause arrives.
  void fail(std::string error, FailureKind kind = FailureKind::kCause) {
    {
      std::lock_guard lock(mutex_);
      if (!error_ || (error_kind_ == FailureKind::kConsequence && kind == FailureKind::kCause)) {
        error_ = std::move(error);
        error_kind_ = kind;
      }
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
  // What error() is; meaningless while there is none.
  FailureKind error_kind() const {
    std::lock_guard lock(mutex_);
    return error_kind_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mutex_;
  std::optional<std::string> error_;
  FailureKind error_kind_ = FailureKind::kCause;
  std::vector<InputQueue*> queues_;
  std::vector<std::function<void()>> hooks_;
};

}  // namespace sage::runtime
