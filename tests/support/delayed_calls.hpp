// Test and benchmark support: a thread that runs each scheduled call once its
// time has come, standing in for a remote service that answers an
// asynchronous map's calls after a delay, on a thread of its own.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

namespace sage::testing {

class DelayedCalls {
 public:
  using Clock = std::chrono::steady_clock;

  DelayedCalls() : thread_([this] { run(); }) {}
  ~DelayedCalls() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }
  DelayedCalls(const DelayedCalls&) = delete;
  DelayedCalls& operator=(const DelayedCalls&) = delete;

  // Runs `call` on this object's thread `delay` from now (calls due at the
  // same time run in the order they were scheduled). Calls not yet due when
  // the object is destroyed never run.
  void after(std::chrono::microseconds delay, std::function<void()> call) {
    {
      std::lock_guard lock(mutex_);
      due_.emplace(Clock::now() + delay, std::move(call));
    }
    wake_.notify_one();
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      if (due_.empty()) {
        wake_.wait(lock);
      } else if (due_.begin()->first > Clock::now()) {
        wake_.wait_until(lock, due_.begin()->first);
      } else {
        auto call = std::move(due_.begin()->second);
        due_.erase(due_.begin());
        lock.unlock();
        call();
        lock.lock();
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::multimap<Clock::time_point, std::function<void()>> due_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sage::testing
