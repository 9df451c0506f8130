// User-defined metrics of one operator instance: counters, gauges and
// histograms, reached through RuntimeContext::metrics(). The instance's own
// thread updates them; the engine reads them concurrently for reports, so
// every update is a relaxed atomic operation and never blocks.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sage {

// A monotonically increasing count.
class Counter {
 public:
  void inc(std::int64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

// The last value set.
class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Summary of a histogram at one moment, with its non-empty buckets so that
// the histograms of several instances merge into one.
struct HistogramSnapshot {
  std::uint64_t count = 0;
  double sum = 0, min = 0, max = 0, p50 = 0, p90 = 0, p99 = 0;
  std::vector<std::pair<int, std::uint64_t>> buckets;  // (bucket, values in it), by bucket
  double mean() const { return count == 0 ? 0.0 : sum / static_cast<double>(count); }
  // Adds the values of `other` (the same histogram of another instance):
  // counts, sums and buckets add up, min and max widen, and the quantiles
  // become those of the merged buckets.
  void merge(const HistogramSnapshot& other);
};

// Distribution of non-negative values (latencies, sizes). Quantiles are exact
// to within about 9 % of the value: buckets are log-spaced, 8 per power of two,
// from 2^-40 to 2^40; values outside clamp to the end buckets.
class Histogram {
 public:
  void record(double value);
  HistogramSnapshot snapshot() const;
  // The value below which `q` (0..1) of the recorded values lie.
  double quantile(double q) const;

 private:
  static constexpr int kSubBuckets = 8;
  static constexpr int kMinExponent = -40;
  static constexpr int kMaxExponent = 40;
  static constexpr int kBuckets = (kMaxExponent - kMinExponent) * kSubBuckets + 1;
  friend struct HistogramSnapshot;
  static int bucket_of(double value);
  static double bucket_upper_bound(int bucket);
  // The value below which `q` of the values lie, from non-empty buckets in order.
  static double quantile_of(const std::vector<std::pair<int, std::uint64_t>>& buckets,
                            std::uint64_t count, double min, double max, double q);
  std::vector<std::pair<int, std::uint64_t>> nonempty_buckets() const;

  std::array<std::atomic<std::uint64_t>, kBuckets> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0.0};
  std::atomic<double> min_{0.0};
  std::atomic<double> max_{0.0};
};

// All values of one Metrics registry at one moment.
struct MetricsSnapshot {
  std::map<std::string, std::int64_t> counters;
  std::map<std::string, double> gauges;
  std::map<std::string, HistogramSnapshot> histograms;
};

// The named metrics of one operator instance. Looking a metric up takes a lock;
// keep the returned reference (it stays valid for the instance's lifetime) and
// update through it on the per-record path.
class Metrics {
 public:
  Counter& counter(std::string_view name);
  Gauge& gauge(std::string_view name);
  Histogram& histogram(std::string_view name);
  // Shorthand for histogram(name).record(value), e.g.
  // metrics().record("processing_time", seconds).
  void record(std::string_view name, double value) { histogram(name).record(value); }

  MetricsSnapshot snapshot() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Counter>, std::less<>> counters_;
  std::map<std::string, std::unique_ptr<Gauge>, std::less<>> gauges_;
  std::map<std::string, std::unique_ptr<Histogram>, std::less<>> histograms_;
};

}  // namespace sage
