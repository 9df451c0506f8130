// The input queue of one task (one parallel instance of a chain): every
// channel into the task delivers here, and the engine posts the task's
// checkpoint commands here (a source task has a queue for those alone). Bounded in batches: a
// producer that finds it full blocks until the consumer has taken it down to half its capacity,
// which is the engine's backpressure. Many producer threads, one consumer thread. It is also the
// task's wake-up: an asynchronous operator's call that completes on another thread wakes the
// task through it, whether the task waits for input or for room among its calls.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "sage/detail/batch.hpp"
#include "sage/detail/instance_metrics.hpp"

namespace sage::runtime {

class InputQueue final : public detail::MessageSink, public detail::TaskWaker {
 public:
  // `metrics` (of the chain's head instance) receives occupancy figures.
  InputQueue(std::size_t capacity, detail::InstanceMetrics& metrics);

  // Blocks while full. Throws detail::JobCancelledError once abort() was called.
  void push(detail::Message message) override;
  // A command for the task (Message::command): taken before the batches
  // waiting, and never blocks (the queue's capacity is for batches).
  void post(detail::Message command);
  // Takes a command or message if one is there; never waits.
  bool try_pop(detail::Message& out);
  // Takes the oldest message; false if none arrives before `deadline`
  // (time_point::max(): none) or wake() was called since the last pop or wait.
  // Throws detail::JobCancelledError once abort() was called.
  bool pop_until(detail::Message& out, std::chrono::steady_clock::time_point deadline);
  // Takes the oldest message, however long that takes (wake() does not end the wait).
  void pop(detail::Message& out);

  // From any thread: ends the consumer's pop_until() or wait_for_wake() in
  // progress, or the next one.
  void wake() override;
  // Waits, taking nothing, until wake() is called or `deadline` passes.
  // Throws detail::JobCancelledError once abort() was called.
  void wait_for_wake(std::chrono::steady_clock::time_point deadline);

  // Wakes every blocked producer and the consumer, which then throw.
  void abort();

 private:
  // Until a message, `deadline` (max: none) or, if `wakeable`, a wake(): whether a message is
  // there.
  bool wait_for_message(std::unique_lock<std::mutex>& lock,
                        std::chrono::steady_clock::time_point deadline, bool wakeable);
  // Yields a little before the consumer sleeps (see kSpinsBeforeSleep).
  void spin() const;
  void take(detail::Message& out);

  const std::size_t capacity_;
  detail::InstanceMetrics& metrics_;
  std::mutex mutex_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<detail::Message> messages_;
  std::deque<detail::Message> commands_;
  std::atomic<std::size_t> size_{0};  // read without the lock while spinning
  int blocked_producers_ = 0;
  bool consumer_waiting_ = false;
  bool aborted_ = false;
  std::atomic<bool> woken_{false};  // set by wake(), cleared by the consumer's wait that it ends
};

}  // namespace sage::runtime
