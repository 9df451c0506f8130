// A mutex, its scoped lock and a condition variable that clang's
// thread-safety analysis understands (std::mutex carries no annotations).
// Same semantics as std::mutex, std::unique_lock and std::condition_variable.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "cluster/thread_annotations.hpp"

namespace sage::cluster {

class SAGE_CAPABILITY("mutex") Mutex {
 public:
  void lock() SAGE_ACQUIRE() { mutex_.lock(); }
  void unlock() SAGE_RELEASE() { mutex_.unlock(); }

 private:
  friend class ConditionVariable;
  std::mutex mutex_;
};

// Holds a Mutex for its scope; unlock() and lock() let it go for a while
// (around a blocking write, say).
class SAGE_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mutex) SAGE_ACQUIRE(mutex) : mutex_(mutex) { mutex_.lock(); }
  ~MutexLock() SAGE_RELEASE() {
    if (locked_) mutex_.unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void unlock() SAGE_RELEASE() {
    mutex_.unlock();
    locked_ = false;
  }
  void lock() SAGE_ACQUIRE() {
    mutex_.lock();
    locked_ = true;
  }

 private:
  Mutex& mutex_;
  bool locked_ = true;
};

// Waits release `mutex` while they wait and hold it again when they return.
class ConditionVariable {
 public:
  void wait(Mutex& mutex) SAGE_REQUIRES(mutex) {
    std::unique_lock lock(mutex.mutex_, std::adopt_lock);
    condition_.wait(lock);
    lock.release();
  }
  void wait_for(Mutex& mutex, std::chrono::milliseconds timeout) SAGE_REQUIRES(mutex) {
    std::unique_lock lock(mutex.mutex_, std::adopt_lock);
    condition_.wait_for(lock, timeout);
    lock.release();
  }
  void notify_all() { condition_.notify_all(); }

 private:
  std::condition_variable condition_;
};

}  // namespace sage::cluster
