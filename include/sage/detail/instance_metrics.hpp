// Built-in counters of one operator instance, updated once per batch by the
// instance's thread and read concurrently by reporters.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "sage/metrics.hpp"

namespace sage::detail {

struct InstanceMetrics {
  std::atomic<std::uint64_t> records_in{0};
  std::atomic<std::uint64_t> records_out{0};
  std::atomic<std::uint64_t> busy_ns{0};     // time in the operator's own code
  std::atomic<std::uint64_t> blocked_ns{0};  // time waiting for room downstream
  // When the wait in progress began (steady clock, ns); 0 while not waiting.
  // Live statistics count a long wait before it ends. The pair is written
  // under blocked_version (odd while it changes), so readers see it whole.
  std::atomic<std::int64_t> blocked_since_ns{0};
  std::atomic<std::uint64_t> blocked_version{0};
  std::atomic<std::uint64_t> errors{0};
  // Batches waiting in the input queue of the chain this instance heads:
  // now, the most ever, and the bound. Zero for chained operators.
  std::atomic<std::uint64_t> queue_batches{0};
  std::atomic<std::uint64_t> queue_peak_batches{0};
  std::atomic<std::uint64_t> queue_capacity_batches{0};
  Metrics user;  // what the function records through RuntimeContext::metrics()

  void add(std::atomic<std::uint64_t>& counter, std::uint64_t n) {
    counter.fetch_add(n, std::memory_order_relaxed);
  }
};

// Adds the wall time of its scope to a counter.
class ScopedTimer {
 public:
  explicit ScopedTimer(std::atomic<std::uint64_t>& target)
      : target_(target), start_(std::chrono::steady_clock::now()) {}
  ~ScopedTimer() {
    const auto elapsed = std::chrono::steady_clock::now() - start_;
    target_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count(),
                      std::memory_order_relaxed);
  }
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;

 private:
  std::atomic<std::uint64_t>& target_;
  std::chrono::steady_clock::time_point start_;
};

// A steady-clock time point in nanoseconds since the clock's epoch.
inline std::int64_t steady_ns(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// Counts its scope as time waiting for room downstream, visible while it lasts.
class BlockedTimer {
 public:
  explicit BlockedTimer(InstanceMetrics& metrics)
      : metrics_(metrics), start_(std::chrono::steady_clock::now()) {
    metrics_.blocked_version.fetch_add(1);
    metrics_.blocked_since_ns.store(steady_ns(start_));
    metrics_.blocked_version.fetch_add(1);
  }
  ~BlockedTimer() {
    const auto elapsed = std::chrono::steady_clock::now() - start_;
    metrics_.blocked_version.fetch_add(1);
    metrics_.blocked_ns.fetch_add(
        std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
    metrics_.blocked_since_ns.store(0);
    metrics_.blocked_version.fetch_add(1);
  }
  BlockedTimer(const BlockedTimer&) = delete;
  BlockedTimer& operator=(const BlockedTimer&) = delete;

 private:
  InstanceMetrics& metrics_;
  std::chrono::steady_clock::time_point start_;
};

// A failure in user code, tagged with the instance it happened in. The task
// turns it into the job's error.
struct OperatorError {
  std::string operator_name;
  int parallel_index = 0;
  int parallelism = 1;
  std::string node_id;
  std::string message;
};

}  // namespace sage::detail
