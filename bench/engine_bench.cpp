// Engine benchmarks with same-run baselines (issue: benchmarks). Each workload
// prints records/s for sage and for a hand-written loop doing the same work in
// this process, and their ratio; --json FILE also writes them as JSON
// (schema in docs/performance.md). It also times a snapshot of keyed state with
// 10^6 keys against writing the same pairs in a plain serialization loop.
//
//   build/bench/engine_bench [--records N] [--repeat R] [--json FILE]
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <sage/sage.hpp>

#include "bench_options.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Figure {
  std::string workload;
  double sage_records_per_second = 0;
  double baseline_records_per_second = 0;
  std::string baseline;
  // Peak RSS of the process once this workload (and those before it) ran: an
  // upper bound of its own peak, since the workloads run one after another.
  long peak_rss_kib = 0;
};

double seconds_of(const std::function<void()>& run) {
  const auto start = Clock::now();
  run();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Median of `repeat` runs, in records per second.
double rate(long long records, int repeat, const std::function<void()>& run) {
  std::vector<double> rates;
  for (int i = 0; i < repeat; ++i) rates.push_back(static_cast<double>(records) / seconds_of(run));
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

// Adds what it sees into a shared total at close(), so no work is optimized away.
class SumSink : public sage::Function {
 public:
  explicit SumSink(std::atomic<long long>* total) : total_(total) {}
  void sink(long long x) { sum_ += x; }
  void close() override { total_->fetch_add(sum_); }

 private:
  std::atomic<long long>* total_;
  long long sum_ = 0;
};

long long expected_chain_sum(long long n) {
  long long sum = 0;
  for (long long x = 0; x < n; ++x) {
    const long long y = x * 2;
    if (y % 3 == 0) sum += y;
  }
  return sum;
}

void check(long long got, long long want, const char* workload) {
  if (got != want) {
    std::fprintf(stderr, "%s: wrong result %lld, expected %lld\n", workload, got, want);
    std::exit(1);
  }
}

// W1 (parallelism 1, all chained) and W2 (4 / 3 / 2 with rebalancing).
double chain_workload(long long n, int source_p, int map_p, int filter_p, int sink_p,
                      bool rebalance, long long want) {
  std::atomic<long long> total{0};
  sage::LocalEnvironment env("chain");
  auto mapped = env.from_sequence(0, n, {.parallelism = source_p})
                    .map([](long long x) { return x * 2; }, {.parallelism = map_p});
  auto filtered = (rebalance ? mapped.rebalance() : mapped)
                      .filter([](long long x) { return x % 3 == 0; }, {.parallelism = filter_p});
  (rebalance ? filtered.rebalance() : filtered)
      .sink<SumSink>(sage::Options{.parallelism = sink_p}, &total);
  env.execute();
  check(total.load(), want, "chain");
  return 0;
}

// W3: count per key over `keys` keys with keyed ValueState, parallelism 2.
class CountPerKey : public sage::Function {
 public:
  void open(sage::RuntimeContext& ctx) override { count_.emplace(ctx.value_state<long long>("n")); }
  long long map(long long x) {
    ++count_->get_or_init(0);
    return x;
  }

 private:
  std::optional<sage::ValueState<long long>> count_;
};

// Checkpoint cost: a snapshot of the keyed state of one operator instance with
// `keys` keys in a ValueState<long long>, against writing the same (key, value)
// pairs with a plain Writer loop into a buffer that already has the room.
struct SnapshotFigure {
  long long keys = 0;
  double seconds = 0;
  std::size_t bytes = 0;
  int groups = 0;
  double baseline_seconds = 0;
  std::size_t baseline_bytes = 0;
};

SnapshotFigure snapshot_figure(long long keys, int repeat) {
  constexpr int kMaxParallelism = 128;  // ExecutionConfig's default
  sage::detail::TypedKeyedStateBackend<long long> backend;
  sage::ValueState<long long> value(backend, "value");
  std::vector<std::pair<long long, long long>> pairs;
  for (long long key = 0; key < keys; ++key) {
    backend.set_current_key(key);
    value.update(key * 3);
    pairs.emplace_back(key, key * 3);
  }
  backend.clear_current_key();

  SnapshotFigure f{.keys = keys};
  sage::Writer out;
  std::vector<double> seconds;
  std::vector<double> baseline_seconds;
  for (int i = 0; i < repeat; ++i) {
    std::map<int, std::string> groups;
    seconds.push_back(seconds_of([&] { backend.snapshot(kMaxParallelism, groups); }));
    f.bytes = 0;
    for (const auto& [group, bytes] : groups) f.bytes += bytes.size();
    f.groups = static_cast<int>(groups.size());
    out.buffer().clear();  // keeps its capacity: the baseline is encoding alone
    baseline_seconds.push_back(seconds_of([&] {
      for (const auto& [key, v] : pairs) {
        out.write(key);
        out.write(v);
      }
    }));
    f.baseline_bytes = out.size();
  }
  std::sort(seconds.begin(), seconds.end());
  std::sort(baseline_seconds.begin(), baseline_seconds.end());
  f.seconds = seconds[seconds.size() / 2];
  f.baseline_seconds = baseline_seconds[baseline_seconds.size() / 2];
  return f;
}

long peak_rss_kib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

}  // namespace

int main(int argc, char** argv) {
  const sage::bench::BenchOptions options =
      sage::bench::parse_bench_options(argc, argv, 50'000'000);
  const long long n = options.records;
  const int repeat = options.repeat;
  const std::string& json_path = options.json_path;
  const long long want = expected_chain_sum(n);
  std::vector<Figure> figures;

  {
    Figure f{"W1 chain p1", 0, 0, "hand-written loop"};
    f.sage_records_per_second =
        rate(n, repeat, [&] { chain_workload(n, 1, 1, 1, 1, false, want); });
    f.baseline_records_per_second = rate(n, repeat, [&] {
      volatile long long sink = expected_chain_sum(n);
      (void)sink;
    });
    f.peak_rss_kib = peak_rss_kib();
    figures.push_back(f);
  }
  {
    Figure f{"W2 p4/3/2 rebalance", 0, 0, "hand-written loop, 1 thread"};
    f.sage_records_per_second = rate(n, repeat, [&] { chain_workload(n, 1, 4, 3, 2, true, want); });
    f.baseline_records_per_second = figures.front().baseline_records_per_second;
    f.peak_rss_kib = peak_rss_kib();
    figures.push_back(f);
  }
  {
    constexpr long long kKeys = 100'000;
    const long long records = n / 5;
    Figure f{"W3 keyed count p2", 0, 0, "unordered_map count loop, 1 thread"};
    f.sage_records_per_second = rate(records, repeat, [&] {
      std::atomic<long long> total{0};
      sage::LocalEnvironment env("keyed");
      env.from_sequence(0, records, {.parallelism = 2})
          .key_by([](long long x) { return x % kKeys; })
          .map<CountPerKey>(sage::Options{.parallelism = 2})
          .sink<SumSink>(sage::Options{.parallelism = 2}, &total);
      env.execute();
      check(total.load(), records * (records - 1) / 2, "keyed");
    });
    f.baseline_records_per_second = rate(records, repeat, [&] {
      std::unordered_map<long long, long long> counts;
      for (long long x = 0; x < records; ++x) ++counts[x % kKeys];
      if (counts.size() != static_cast<std::size_t>(std::min(records, kKeys))) std::exit(1);
    });
    f.peak_rss_kib = peak_rss_kib();
    figures.push_back(f);
  }

  // Taken before the snapshot figure, whose 10^6 keys would dominate it.
  const long run_peak_rss_kib = peak_rss_kib();
  const SnapshotFigure snapshot = snapshot_figure(1'000'000, repeat);

  std::printf("%-22s %16s %16s %8s %12s  %s\n", "workload", "sage rec/s", "baseline rec/s", "ratio",
              "peak RSS MiB", "baseline");
  for (const auto& f : figures) {
    std::printf("%-22s %16.3e %16.3e %8.2f %12.1f  %s\n", f.workload.c_str(),
                f.sage_records_per_second, f.baseline_records_per_second,
                f.sage_records_per_second / f.baseline_records_per_second,
                static_cast<double>(f.peak_rss_kib) / 1024.0, f.baseline.c_str());
  }
  std::printf("peak RSS of the workloads: %.1f MiB (records per run: %lld, median of %d)\n",
              run_peak_rss_kib / 1024.0, n, repeat);
  std::printf(
      "keyed state snapshot, %lld keys of a ValueState<long long>: %.1f ms, %.1f MB in %d key "
      "groups; the same pairs through a plain Writer loop: %.1f ms, %.1f MB; ratio %.2f\n",
      snapshot.keys, snapshot.seconds * 1e3, static_cast<double>(snapshot.bytes) / 1e6,
      snapshot.groups, snapshot.baseline_seconds * 1e3,
      static_cast<double>(snapshot.baseline_bytes) / 1e6,
      snapshot.baseline_seconds / snapshot.seconds);

  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << "{\"records\": " << n << ", \"repeat\": " << repeat
        << ", \"peak_rss_kib\": " << run_peak_rss_kib << ", \"workloads\": [";
    for (std::size_t i = 0; i < figures.size(); ++i) {
      const auto& f = figures[i];
      out << (i ? ", " : "") << "{\"name\": \"" << f.workload
          << "\", \"sage_records_per_second\": " << f.sage_records_per_second
          << ", \"baseline_records_per_second\": " << f.baseline_records_per_second
          << ", \"baseline\": \"" << f.baseline << "\", \"peak_rss_kib\": " << f.peak_rss_kib
          << "}";
    }
    out << "], \"snapshot\": {\"keys\": " << snapshot.keys << ", \"seconds\": " << snapshot.seconds
        << ", \"bytes\": " << snapshot.bytes << ", \"key_groups\": " << snapshot.groups
        << ", \"baseline_seconds\": " << snapshot.baseline_seconds
        << ", \"baseline_bytes\": " << snapshot.baseline_bytes
        << ", \"baseline\": \"plain Writer loop over the same pairs\"}}\n";
  }
}
