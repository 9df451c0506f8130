#include "runtime/input_queue.hpp"

#include <thread>

namespace sage::runtime {
namespace {

// Before sleeping, a consumer polls this many times: a batch often arrives
// within microseconds, and a sleep/wake pair costs more than that.
constexpr int kSpinsBeforeSleep = 64;

}  // namespace

InputQueue::InputQueue(std::size_t capacity, detail::InstanceMetrics& metrics)
    : capacity_(capacity), metrics_(metrics) {
  metrics_.queue_capacity_batches.store(capacity, std::memory_order_relaxed);
}

void InputQueue::push(detail::Message message) {
  std::unique_lock lock(mutex_);
  while (messages_.size() >= capacity_ && !aborted_) {
    ++blocked_producers_;
    not_full_.wait(lock);
    --blocked_producers_;
  }
  if (aborted_) throw detail::JobCancelledError{};
  messages_.push_back(std::move(message));
  const auto size = messages_.size();
  size_.store(size + commands_.size(), std::memory_order_release);
  metrics_.queue_batches.store(size, std::memory_order_relaxed);
  if (size > metrics_.queue_peak_batches.load(std::memory_order_relaxed)) {
    metrics_.queue_peak_batches.store(size, std::memory_order_relaxed);
  }
  if (consumer_waiting_) not_empty_.notify_one();
}

void InputQueue::post(detail::Message command) {
  std::lock_guard lock(mutex_);
  commands_.push_back(std::move(command));
  size_.store(messages_.size() + commands_.size(), std::memory_order_release);
  if (consumer_waiting_) not_empty_.notify_one();
}

bool InputQueue::try_pop(detail::Message& out) {
  if (size_.load(std::memory_order_acquire) == 0) return false;
  std::lock_guard lock(mutex_);
  if (aborted_) throw detail::JobCancelledError{};
  if (messages_.empty() && commands_.empty()) return false;
  take(out);
  return true;
}

bool InputQueue::wait_for_message(std::unique_lock<std::mutex>& lock,
                                  std::chrono::steady_clock::time_point deadline, bool wakeable) {
  const bool forever = deadline == std::chrono::steady_clock::time_point::max();
  while (messages_.empty() && commands_.empty() && !aborted_) {
    if (wakeable && woken_.exchange(false)) return false;
    consumer_waiting_ = true;
    if (forever) {
      not_empty_.wait(lock);
    } else if (not_empty_.wait_until(lock, deadline) == std::cv_status::timeout) {
      consumer_waiting_ = false;
      if (aborted_) throw detail::JobCancelledError{};
      if (wakeable) woken_.store(false);
      return !messages_.empty() || !commands_.empty();
    }
    consumer_waiting_ = false;
  }
  if (aborted_) throw detail::JobCancelledError{};
  // The caller takes a message now and then polls whatever woke it.
  if (wakeable) woken_.store(false);
  return true;
}

void InputQueue::spin() const {
  for (int spin = 0; spin < kSpinsBeforeSleep && size_.load(std::memory_order_acquire) == 0 &&
                     !woken_.load(std::memory_order_acquire);
       ++spin) {
    std::this_thread::yield();
  }
}

void InputQueue::take(detail::Message& out) {
  if (!commands_.empty()) {
    out = std::move(commands_.front());
    commands_.pop_front();
    size_.store(messages_.size() + commands_.size(), std::memory_order_release);
    return;
  }
  out = std::move(messages_.front());
  messages_.pop_front();
  const auto size = messages_.size();
  size_.store(size + commands_.size(), std::memory_order_release);
  metrics_.queue_batches.store(size, std::memory_order_relaxed);
  // Blocked producers wake once the queue is half empty, not after every batch taken: each
  // then has room for several batches, where waking per batch cost a thread switch per batch
  // whenever the producers were the faster side.
  if (blocked_producers_ > 0 && size <= capacity_ / 2) not_full_.notify_one();
}

bool InputQueue::pop_until(detail::Message& out, std::chrono::steady_clock::time_point deadline) {
  spin();
  std::unique_lock lock(mutex_);
  if (!wait_for_message(lock, deadline, true)) return false;
  take(out);
  return true;
}

void InputQueue::pop(detail::Message& out) {
  spin();
  std::unique_lock lock(mutex_);
  wait_for_message(lock, std::chrono::steady_clock::time_point::max(), false);
  take(out);
}

void InputQueue::wake() {
  std::lock_guard lock(mutex_);
  woken_.store(true, std::memory_order_release);
  if (consumer_waiting_) not_empty_.notify_one();
}

void InputQueue::wait_for_wake(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  while (!aborted_ && !woken_.exchange(false)) {
    consumer_waiting_ = true;
    if (deadline == std::chrono::steady_clock::time_point::max()) {
      not_empty_.wait(lock);
    } else if (not_empty_.wait_until(lock, deadline) == std::cv_status::timeout) {
      consumer_waiting_ = false;
      break;
    }
    consumer_waiting_ = false;
  }
  if (aborted_) throw detail::JobCancelledError{};
}

void InputQueue::abort() {
  std::lock_guard lock(mutex_);
  aborted_ = true;
  not_empty_.notify_all();
  not_full_.notify_all();
}

}  // namespace sage::runtime
