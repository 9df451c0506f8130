#include "sage/metrics.hpp"

#include <algorithm>
#include <cmath>

namespace sage {
namespace {

// Atomically replaces `target` by `op(target, value)`, for min/max/sum of doubles.
template <class Op>
void atomic_update(std::atomic<double>& target, double value, Op op) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, op(current, value), std::memory_order_relaxed)) {
  }
}

template <class M>
M& find_or_create(std::mutex& mutex, std::map<std::string, std::unique_ptr<M>, std::less<>>& map,
                  std::string_view name) {
  std::lock_guard lock(mutex);
  auto it = map.find(name);
  if (it == map.end()) it = map.emplace(std::string(name), std::make_unique<M>()).first;
  return *it->second;
}

}  // namespace

int Histogram::bucket_of(double value) {
  if (!(value > 0)) return 0;  // zero, negative and NaN land in the first bucket
  int exponent = 0;
  const double mantissa = std::frexp(value, &exponent);  // value = mantissa * 2^exponent
  const int sub = static_cast<int>((mantissa - 0.5) * 2 * kSubBuckets);
  const int bucket = (exponent - 1 - kMinExponent) * kSubBuckets + sub + 1;
  return std::clamp(bucket, 0, kBuckets - 1);
}

double Histogram::bucket_upper_bound(int bucket) {
  if (bucket == 0) return std::ldexp(1.0, kMinExponent);
  const int exponent = (bucket - 1) / kSubBuckets + kMinExponent;
  const int sub = (bucket - 1) % kSubBuckets;
  return std::ldexp(1.0 + static_cast<double>(sub + 1) / kSubBuckets, exponent);
}

void Histogram::record(double value) {
  buckets_[bucket_of(value)].fetch_add(1, std::memory_order_relaxed);
  if (count_.fetch_add(1, std::memory_order_relaxed) == 0) {
    min_.store(value, std::memory_order_relaxed);
    max_.store(value, std::memory_order_relaxed);
  } else {
    atomic_update(min_, value, [](double a, double b) { return std::min(a, b); });
    atomic_update(max_, value, [](double a, double b) { return std::max(a, b); });
  }
  atomic_update(sum_, value, std::plus<>());
}

std::vector<std::pair<int, std::uint64_t>> Histogram::nonempty_buckets() const {
  std::vector<std::pair<int, std::uint64_t>> buckets;
  for (int b = 0; b < kBuckets; ++b) {
    if (const auto n = buckets_[b].load(std::memory_order_relaxed); n > 0)
      buckets.emplace_back(b, n);
  }
  return buckets;
}

double Histogram::quantile_of(const std::vector<std::pair<int, std::uint64_t>>& buckets,
                              std::uint64_t count, double min, double max, double q) {
  if (count == 0) return 0.0;
  const auto rank = static_cast<std::uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * count));
  std::uint64_t seen = 0;
  for (const auto& [bucket, n] : buckets) {
    seen += n;
    if (seen >= std::max<std::uint64_t>(rank, 1)) {
      // Not std::clamp: a snapshot from another process may have min > max.
      return std::min(std::max(bucket_upper_bound(bucket), min), max);
    }
  }
  return max;
}

double Histogram::quantile(double q) const {
  return quantile_of(nonempty_buckets(), count_.load(std::memory_order_relaxed),
                     min_.load(std::memory_order_relaxed), max_.load(std::memory_order_relaxed), q);
}

HistogramSnapshot Histogram::snapshot() const {
  HistogramSnapshot s;
  s.count = count_.load(std::memory_order_relaxed);
  if (s.count == 0) return s;
  s.sum = sum_.load(std::memory_order_relaxed);
  s.min = min_.load(std::memory_order_relaxed);
  s.max = max_.load(std::memory_order_relaxed);
  s.buckets = nonempty_buckets();
  s.p50 = quantile_of(s.buckets, s.count, s.min, s.max, 0.50);
  s.p90 = quantile_of(s.buckets, s.count, s.min, s.max, 0.90);
  s.p99 = quantile_of(s.buckets, s.count, s.min, s.max, 0.99);
  return s;
}

void HistogramSnapshot::merge(const HistogramSnapshot& other) {
  if (other.count == 0) return;
  min = count == 0 ? other.min : std::min(min, other.min);
  max = count == 0 ? other.max : std::max(max, other.max);
  count += other.count;
  sum += other.sum;
  std::map<int, std::uint64_t> merged(buckets.begin(), buckets.end());
  for (const auto& [bucket, n] : other.buckets) merged[bucket] += n;
  buckets.assign(merged.begin(), merged.end());
  p50 = Histogram::quantile_of(buckets, count, min, max, 0.50);
  p90 = Histogram::quantile_of(buckets, count, min, max, 0.90);
  p99 = Histogram::quantile_of(buckets, count, min, max, 0.99);
}

Counter& Metrics::counter(std::string_view name) { return find_or_create(mutex_, counters_, name); }
Gauge& Metrics::gauge(std::string_view name) { return find_or_create(mutex_, gauges_, name); }
Histogram& Metrics::histogram(std::string_view name) {
  return find_or_create(mutex_, histograms_, name);
}

MetricsSnapshot Metrics::snapshot() const {
  std::lock_guard lock(mutex_);
  MetricsSnapshot s;
  for (const auto& [name, c] : counters_) s.counters[name] = c->value();
  for (const auto& [name, g] : gauges_) s.gauges[name] = g->value();
  for (const auto& [name, h] : histograms_) s.histograms[name] = h->snapshot();
  return s;
}

}  // namespace sage
