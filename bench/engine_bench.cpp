// Engine benchmarks with same-run baselines (issue: benchmarks). Each workload
// prints records/s for sage and for a hand-written loop doing the same work in
// this process, and their ratio; --json FILE also writes them as JSON
// (schema in docs/performance.md). It also times a snapshot of keyed state with
// 10^6 keys against writing the same pairs in a plain serialization loop, and
// measures what checkpoints cost: W3 with checkpoints every second against W3
// without, and the size of a job's checkpoint of 10^6 keys. Those pairs of
// runs alternate (off, on, off, on, ...) so both sides see the same noise.
//
//   build/bench/engine_bench [--records N] [--repeat R] [--json FILE]
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <sage/sage.hpp>

#include "bench_options.hpp"
#include "measure.hpp"

namespace {

using sage::bench::cpu_seconds;
using sage::bench::median;
using sage::bench::seconds_of;

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

// Median of `repeat` runs, in records per second.
double rate(long long records, int repeat, const std::function<void()>& run) {
  std::vector<double> rates;
  for (int i = 0; i < repeat; ++i) rates.push_back(static_cast<double>(records) / seconds_of(run));
  return median(rates);
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

// W3: count per key over kW3Keys keys with keyed ValueState, parallelism 2.
constexpr long long kW3Keys = 100'000;

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

// W3's job: `records` records over `keys` keys, under `config`.
sage::JobResult keyed_count_job(long long records, long long keys,
                                const sage::ExecutionConfig& config) {
  std::atomic<long long> total{0};
  sage::LocalEnvironment env("keyed", config);
  env.from_sequence(0, records, {.parallelism = 2})
      .key_by([keys](long long x) { return x % keys; })
      .map<CountPerKey>(sage::Options{.parallelism = 2})
      .sink<SumSink>(sage::Options{.parallelism = 2}, &total);
  sage::JobResult result = env.execute();
  check(total.load(), records * (records - 1) / 2, "keyed");
  return result;
}

// A fresh directory under the system's temporary directory ($TMPDIR, else
// /tmp), removed with everything in it when this goes out of scope.
class TemporaryDirectory {
 public:
  TemporaryDirectory() {
    std::string path = (std::filesystem::temp_directory_path() / "sage-bench-XXXXXX").string();
    if (mkdtemp(path.data()) == nullptr) {
      std::perror(("cannot create a temporary directory " + path).c_str());
      std::exit(1);
    }
    path_ = path;
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;
  ~TemporaryDirectory() {
    std::error_code error;
    std::filesystem::remove_all(path_, error);
    if (error) {
      std::fprintf(stderr, "cannot remove %s: %s\n", path_.c_str(), error.message().c_str());
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// What checkpoints cost a job: its runs with checkpoints off and on, which
// alternate (off, on, off, on, ...) so that both sides see the same noise of
// a shared machine. A bounded job ends with a final checkpoint, counted in
// checkpoints_completed and the last checkpoint of every run with them on.
struct CheckpointFigure {
  std::string name;
  long long records = 0;
  long long keys = 0;
  std::chrono::milliseconds interval{0};
  std::vector<double> off_seconds;  // wall-clock, per run, in run order
  std::vector<double> on_seconds;
  std::vector<double> off_cpu_seconds;               // CPU time of all threads, per run: less
  std::vector<double> on_cpu_seconds;                // sensitive to other load than wall-clock
  std::vector<std::uint64_t> checkpoints_completed;  // per run with checkpoints on
  std::vector<std::uint64_t> checkpoints_failed;     // declined or timed out, likewise
  std::uint64_t last_checkpoint_bytes = 0;           // of the last run with them on

  double off_rate() const { return static_cast<double>(records) / median(off_seconds); }
  double on_rate() const { return static_cast<double>(records) / median(on_seconds); }
  // Each run with checkpoints on against the run without just before it.
  double median_pair_ratio() const {
    std::vector<double> ratios;
    for (std::size_t i = 0; i < on_seconds.size(); ++i) {
      ratios.push_back(off_seconds[i] / on_seconds[i]);
    }
    return median(ratios);
  }
};

CheckpointFigure checkpoint_figure(std::string name, long long records, long long keys,
                                   std::chrono::milliseconds interval, int repeat) {
  CheckpointFigure f{
      .name = std::move(name), .records = records, .keys = keys, .interval = interval};
  const TemporaryDirectory directory;
  const sage::ExecutionConfig off;
  const sage::ExecutionConfig on{.checkpoint_interval = interval,
                                 .checkpoint_directory = directory.path()};
  for (int i = 0; i < repeat; ++i) {
    const double cpu_before_off = cpu_seconds();
    f.off_seconds.push_back(seconds_of([&] { keyed_count_job(records, keys, off); }));
    const double cpu_before_on = cpu_seconds();
    f.off_cpu_seconds.push_back(cpu_before_on - cpu_before_off);
    sage::JobResult result;
    f.on_seconds.push_back(seconds_of([&] { result = keyed_count_job(records, keys, on); }));
    f.on_cpu_seconds.push_back(cpu_seconds() - cpu_before_on);
    f.checkpoints_completed.push_back(result.checkpoints_completed);
    f.checkpoints_failed.push_back(result.checkpoints_failed);
    f.last_checkpoint_bytes = result.last_checkpoint_bytes;
  }
  return f;
}

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
  f.seconds = median(seconds);
  f.baseline_seconds = median(baseline_seconds);
  return f;
}

// "median (lowest to highest)" of per-run records/s.
std::string rate_spread(long long records, const std::vector<double>& seconds) {
  const auto [fastest, slowest] = std::minmax_element(seconds.begin(), seconds.end());
  char text[96];
  std::snprintf(text, sizeof text, "%.3e rec/s (%.3e to %.3e)",
                static_cast<double>(records) / median(seconds),
                static_cast<double>(records) / *slowest, static_cast<double>(records) / *fastest);
  return text;
}

void print_checkpoint_figure(const CheckpointFigure& f) {
  std::printf(
      "checkpoints every %lld ms, %s: %lld records over %lld keys, runs off and on alternating, "
      "median of %zu each\n",
      static_cast<long long>(f.interval.count()), f.name.c_str(), f.records, f.keys,
      f.on_seconds.size());
  std::printf("  off: %s, %.3f s and %.3f CPU s per run\n",
              rate_spread(f.records, f.off_seconds).c_str(), median(f.off_seconds),
              median(f.off_cpu_seconds));
  std::printf("  on:  %s, %.3f s and %.3f CPU s per run; checkpoints completed per run:",
              rate_spread(f.records, f.on_seconds).c_str(), median(f.on_seconds),
              median(f.on_cpu_seconds));
  for (const auto completed : f.checkpoints_completed) {
    std::printf(" %llu", static_cast<unsigned long long>(completed));
  }
  std::printf(" (the last of each is the final one), failed:");
  for (const auto failed : f.checkpoints_failed) {
    std::printf(" %llu", static_cast<unsigned long long>(failed));
  }
  std::printf("; last checkpoint %.2f MB\n", static_cast<double>(f.last_checkpoint_bytes) / 1e6);
  std::printf(
      "  on/off records/s %.3f (of the medians), %.3f (median of the off/on pairs); on/off CPU s "
      "%.3f; on - off %.1f ms per run\n",
      f.on_rate() / f.off_rate(), f.median_pair_ratio(),
      median(f.on_cpu_seconds) / median(f.off_cpu_seconds),
      (median(f.on_seconds) - median(f.off_seconds)) * 1e3);
}

// A JSON array of numbers.
template <typename Number>
std::string json_array(const std::vector<Number>& values) {
  std::ostringstream out;
  out << "[";
  for (std::size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << values[i];
  out << "]";
  return out.str();
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
    const long long records = n / 5;
    Figure f{"W3 keyed count p2", 0, 0, "unordered_map count loop, 1 thread"};
    f.sage_records_per_second =
        rate(records, repeat, [&] { keyed_count_job(records, kW3Keys, sage::ExecutionConfig{}); });
    f.baseline_records_per_second = rate(records, repeat, [&] {
      std::unordered_map<long long, long long> counts;
      for (long long x = 0; x < records; ++x) ++counts[x % kW3Keys];
      if (counts.size() != static_cast<std::size_t>(std::min(records, kW3Keys))) std::exit(1);
    });
    f.peak_rss_kib = peak_rss_kib();
    figures.push_back(f);
  }

  // W3 with checkpoints every second against W3 without, on 10·N records
  // rather than W3's N/5: at the default N a run lasts several seconds (about
  // 4 on the development VM), long enough for several periodic checkpoints, so
  // that the final one, which every run with checkpoints takes once, does not
  // make up most of the difference.
  constexpr std::chrono::milliseconds kCheckpointInterval{1'000};
  const long long checkpoint_records = 10 * n;
  std::vector<CheckpointFigure> checkpoint_figures;
  checkpoint_figures.push_back(checkpoint_figure("W3 keyed count p2", checkpoint_records, kW3Keys,
                                                 kCheckpointInterval, repeat));

  // Taken before the figures of 10^6 keys, which would dominate it.
  const long run_peak_rss_kib = peak_rss_kib();
  constexpr long long kSnapshotKeys = 1'000'000;
  const SnapshotFigure snapshot = snapshot_figure(kSnapshotKeys, repeat);
  // A job that ends, with every key seen once, before its first periodic
  // checkpoint: its only checkpoint is the final one, of all 10^6 keys.
  checkpoint_figures.push_back(checkpoint_figure("10^6 keys, one record each", kSnapshotKeys,
                                                 kSnapshotKeys, kCheckpointInterval, repeat));

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
  for (const auto& f : checkpoint_figures) print_checkpoint_figure(f);

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
        << ", \"baseline\": \"plain Writer loop over the same pairs\"}, \"checkpoints\": [";
    for (std::size_t i = 0; i < checkpoint_figures.size(); ++i) {
      const auto& f = checkpoint_figures[i];
      out << (i ? ", " : "") << "{\"name\": \"" << f.name << "\", \"records\": " << f.records
          << ", \"keys\": " << f.keys << ", \"checkpoint_interval_ms\": " << f.interval.count()
          << ", \"off_records_per_second\": " << f.off_rate()
          << ", \"on_records_per_second\": " << f.on_rate()
          << ", \"off_seconds\": " << json_array(f.off_seconds)
          << ", \"on_seconds\": " << json_array(f.on_seconds)
          << ", \"off_cpu_seconds\": " << json_array(f.off_cpu_seconds)
          << ", \"on_cpu_seconds\": " << json_array(f.on_cpu_seconds)
          << ", \"checkpoints_completed\": " << json_array(f.checkpoints_completed)
          << ", \"checkpoints_failed\": " << json_array(f.checkpoints_failed)
          << ", \"last_checkpoint_bytes\": " << f.last_checkpoint_bytes << "}";
    }
    out << "]}\n";
  }
}
