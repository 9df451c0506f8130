// Cluster benchmarks with same-run baselines (issue: benchmarks, W4 to W6).
// Starts a throwaway local cluster (a head without a worker of its own, and
// two workers) with the `sage` command, then:
//   W4  the W2 shape (source 4 -> map 3 -> filter 2 -> sink 2, rebalanced)
//       spread over the 2 task processes of the two workers, with 8-byte and
//       1 KiB records; baseline: loopback TCP bandwidth measured in this run;
//       and the same with TLS on every node (baseline: the run without TLS)
//   W5  latency p50/p99 from source emit to sink at 10 % and 50 % of the
//       highest rate, in one process and across processes (baseline: one
//       thread-to-thread hand-off at the same rate)
//   W6  submit -> first record processed on the warm cluster (baseline: the
//       same one-record job in a LocalEnvironment), and submit -> finished of
//       the reference example (baseline: the example with --local)
// This program is also the job: task processes re-run it with --job arguments.
//
//   build/bench/cluster_bench [--records N] [--repeat R] [--json FILE]
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sage/sage.hpp>

#include "bench_options.hpp"
#include "local_cluster.hpp"
#include "measure.hpp"
#include "support/test_certificates.hpp"

namespace {

using sage::bench::median;

using Clock = std::chrono::steady_clock;

std::int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- the jobs (built identically by the bench and its task processes) ------

class Counting {
 public:
  explicit Counting(long long n) : end_(n) {}
  void open(sage::RuntimeContext& ctx) {
    next_ = ctx.parallel_index();
    step_ = ctx.parallelism();
  }
  std::optional<long long> next() {
    if (next_ >= end_) return std::nullopt;
    const long long v = next_;
    next_ += step_;
    return v;
  }

 private:
  long long next_ = 0, end_, step_ = 1;
};

// W2's shape; with `payload` > 0 every record carries that many bytes.
void build_w4(sage::Environment& env, long long records, int payload) {
  auto numbers =
      env.from_source<Counting>(sage::Options{.name = "source", .parallelism = 4}, records);
  if (payload == 0) {
    numbers.rebalance()
        .map([](long long x) { return x * 2; }, {.name = "map", .parallelism = 3})
        .rebalance()
        .filter([](long long x) { return x % 3 == 0; }, {.name = "filter", .parallelism = 2})
        .sink([](long long) {}, {.name = "sink", .parallelism = 2});
  } else {
    numbers.rebalance()
        .map(
            [payload](long long x) {
              return std::string(static_cast<std::size_t>(payload),
                                 static_cast<char>('a' + x % 26));
            },
            {.name = "map", .parallelism = 3})
        .rebalance()
        .filter([](const std::string& s) { return !s.empty(); },
                {.name = "filter", .parallelism = 2})
        .sink([](const std::string&) {}, {.name = "sink", .parallelism = 2});
  }
}

// One record; the sink writes the wall time it saw it to `stamp_path`.
void build_first_record(sage::Environment& env, const std::string& stamp_path) {
  env.from_collection(std::vector<int>{1}, {.name = "one"})
      .sink([stamp_path](int) { std::ofstream(stamp_path) << wall_ns() << '\n'; },
            {.name = "stamp"});
}

// W5: records carry their emit time (steady clock, the same in every process
// of this machine); the source paces itself to `rate` records/s (0: as fast as
// it can). Each sink prints a histogram of latencies at close().
struct Stamped {
  long long sequence = 0;
  std::int64_t emitted_ns = 0;
  SAGE_FIELDS(sequence, emitted_ns)
};

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// Latencies in buckets of 10 µs up to 100 ms (the last bucket holds the rest).
constexpr int kBuckets = 10'000;
constexpr std::int64_t kBucketNs = 10'000;

class PacedSource {
 public:
  PacedSource(long long records, double rate) : records_(records), rate_(rate) {}
  std::optional<Stamped> next() {
    if (next_ >= records_) return std::nullopt;
    if (rate_ > 0 && next_ % 64 == 0) {
      if (start_ == Clock::time_point{}) start_ = Clock::now();
      std::this_thread::sleep_until(
          start_ + std::chrono::nanoseconds(static_cast<std::int64_t>(next_ * 1e9 / rate_)));
    }
    return Stamped{next_++, steady_ns()};
  }

 private:
  long long records_, next_ = 0;
  double rate_;
  Clock::time_point start_{};
};

class LatencySink : public sage::Function {
 public:
  void sink(const Stamped& record) {
    const std::int64_t bucket = (steady_ns() - record.emitted_ns) / kBucketNs;
    ++histogram_[static_cast<std::size_t>(std::clamp<std::int64_t>(bucket, 0, kBuckets - 1))];
  }
  void close() override {
    std::string line = "histogram";
    for (int b = 0; b < kBuckets; ++b) {
      if (histogram_[b] > 0) line += " " + std::to_string(b) + ":" + std::to_string(histogram_[b]);
    }
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }

 private:
  std::vector<long long> histogram_ = std::vector<long long>(kBuckets);
};

void build_latency(sage::Environment& env, long long records, double rate) {
  env.from_source<PacedSource>(sage::Options{.name = "paced"}, records, rate)
      .rebalance()
      .map([](const Stamped& s) { return s; }, {.name = "pass", .parallelism = 2})
      .rebalance()
      .sink<LatencySink>(sage::Options{.name = "latency", .parallelism = 2});
}

// ---- the local cluster -----------------------------------------------------

using sage::bench::json_field;
using sage::bench::LocalCluster;
using sage::bench::run_command;

// ---- baselines ---------------------------------------------------------------

// Bytes per second one TCP connection over loopback carries, 1 MiB writes.
double loopback_bandwidth(std::size_t total_bytes) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address);
  listen(listener, 1);
  getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
  std::thread receiver([listener, total_bytes] {
    const int connection = accept(listener, nullptr, nullptr);
    std::vector<char> buffer(1 << 20);
    std::size_t received = 0;
    while (received < total_bytes) {
      const ssize_t n = read(connection, buffer.data(), buffer.size());
      if (n <= 0) break;
      received += static_cast<std::size_t>(n);
    }
    close(connection);
  });
  const int sender = socket(AF_INET, SOCK_STREAM, 0);
  connect(sender, reinterpret_cast<sockaddr*>(&address), sizeof address);
  std::vector<char> buffer(1 << 20, 'x');
  const auto start = Clock::now();
  std::size_t sent = 0;
  while (sent < total_bytes) {
    const ssize_t n = write(sender, buffer.data(), std::min(buffer.size(), total_bytes - sent));
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  receiver.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  close(sender);
  close(listener);
  return static_cast<double>(total_bytes) / seconds;
}

// ---- the jobs, one per process ---------------------------------------------------
// A task process re-runs its program with the submitter's arguments, so each
// measured job is submitted by a child of the bench whose arguments name it:
//   --job w4 N PAYLOAD [--local]     prints "result <records/s>"
//   --job first-record FILE [--local] prints "result <ms from submit to the record>"
//   --job latency N RATE [--local]   prints the sinks' "histogram" lines and "result <records/s>"
//   --job latency N RATE [--local]   prints the sinks' "histogram" lines and the rate

std::unique_ptr<sage::Environment> environment(const std::string& name, bool local) {
  if (local) return std::make_unique<sage::LocalEnvironment>(name);
  return std::make_unique<sage::RemoteEnvironment>(name);
}

int run_job(int argc, char** argv) {
  const std::string job = argv[2];
  const bool local = std::string(argv[argc - 1]) == "--local";
  if (job == "w4" && argc >= 5) {
    const long long records = std::atoll(argv[3]);
    const int payload = std::atoi(argv[4]);
    auto env = environment("w4", local);
    build_w4(*env, records, payload);
    const auto start = Clock::now();
    const sage::JobResult result = env->execute();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    std::uint64_t at_sinks = 0;
    std::vector<int> pids;
    for (const auto& s : result.instances) {
      if (s.operator_name == "sink") at_sinks += s.records_in;
      if (std::find(pids.begin(), pids.end(), s.process_id) == pids.end()) {
        pids.push_back(s.process_id);
      }
    }
    const std::uint64_t expected =
        payload == 0 ? static_cast<std::uint64_t>((records + 2) / 3) : records;
    if (at_sinks != expected || (!local && pids.size() < 2)) {
      std::fprintf(stderr, "w4: %llu records at the sinks from %zu processes, expected %llu%s\n",
                   static_cast<unsigned long long>(at_sinks), pids.size(),
                   static_cast<unsigned long long>(expected), local ? "" : " from 2");
      return 1;
    }
    std::printf("result %.6e\n", static_cast<double>(records) / seconds);
    return 0;
  }
  if (job == "latency" && argc >= 5) {
    const long long records = std::atoll(argv[3]);
    auto env = environment("latency", local);
    build_latency(*env, records, std::atof(argv[4]));
    const auto start = Clock::now();
    env->execute();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf("result %.6e\n", static_cast<double>(records) / seconds);
    return 0;
  }
  if (job == "first-record" && argc >= 4) {
    auto env = environment("first-record", local);
    build_first_record(*env, argv[3]);
    const std::int64_t submitted = wall_ns();
    env->execute();
    std::ifstream file(argv[3]);
    std::int64_t seen = 0;
    file >> seen;
    std::printf("result %.3f\n", static_cast<double>(seen - submitted) / 1e6);
    return 0;
  }
  std::fprintf(stderr, "cluster_bench: unknown job\n");
  return 2;
}

// ---- the bench ---------------------------------------------------------------------

struct Row {
  std::string workload;
  std::string unit;
  double sage = 0;
  double baseline = 0;
  std::string baseline_name;
};

// The median over `repeat` runs of a child job's result.
double measure(const std::string& self, const std::string& job_args, int repeat) {
  std::vector<double> results;
  for (int r = 0; r < repeat; ++r) {
    const std::string out = run_command(self + " --job " + job_args);
    const auto at = out.rfind("result ");
    if (at == std::string::npos) {
      std::fprintf(stderr, "cluster_bench: no result from `%s`:\n%s", job_args.c_str(),
                   out.c_str());
      std::exit(1);
    }
    results.push_back(std::stod(out.substr(at + 7)));
  }
  return median(results);
}

struct Latency {
  double p50_ms = 0, p99_ms = 0;
};

// Percentiles of merged histograms ("histogram b:count ..." lines): each
// percentile is the upper edge of its bucket.
Latency percentiles(const std::string& output) {
  std::vector<long long> merged(kBuckets);
  long long total = 0;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    const auto at = line.find("histogram");
    if (at == std::string::npos) continue;
    std::istringstream words(line.substr(at + 9));
    for (std::string word; words >> word;) {
      const auto colon = word.find(':');
      const long long count = std::stoll(word.substr(colon + 1));
      merged[std::stoul(word.substr(0, colon))] += count;
      total += count;
    }
  }
  const auto at_fraction = [&](double fraction) {
    long long seen = 0;
    for (int b = 0; b < kBuckets; ++b) {
      seen += merged[b];
      if (static_cast<double>(seen) >= fraction * static_cast<double>(total)) {
        return static_cast<double>((b + 1) * kBucketNs) / 1e6;
      }
    }
    return static_cast<double>(kBuckets * kBucketNs) / 1e6;
  };
  return {at_fraction(0.5), at_fraction(0.99)};
}

// Runs the latency job for about 2 s at `rate` records/s.
Latency job_latency(const std::string& self, double rate, bool local) {
  const long long records = std::max(1000LL, static_cast<long long>(rate * 2));
  char args[128];
  std::snprintf(args, sizeof args, "latency %lld %.0f%s", records, rate, local ? " --local" : "");
  return percentiles(run_command(self + " --job " + args));
}

// The baseline: one hand-off per record between two threads through a
// mutex/condition-variable queue, at the same rate.
Latency handoff_latency(double rate) {
  const long long records = std::max(1000LL, static_cast<long long>(rate * 2));
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<std::int64_t> queue;
  bool done = false;
  std::vector<long long> histogram(kBuckets);
  std::thread consumer([&] {
    std::unique_lock lock(mutex);
    while (true) {
      ready.wait(lock, [&] { return done || !queue.empty(); });
      if (queue.empty()) return;
      const std::int64_t emitted = queue.front();
      queue.pop_front();
      const std::int64_t bucket = (steady_ns() - emitted) / kBucketNs;
      ++histogram[static_cast<std::size_t>(std::clamp<std::int64_t>(bucket, 0, kBuckets - 1))];
    }
  });
  const auto start = Clock::now();
  for (long long i = 0; i < records; ++i) {
    if (i % 64 == 0) {
      std::this_thread::sleep_until(
          start + std::chrono::nanoseconds(static_cast<std::int64_t>(i * 1e9 / rate)));
    }
    {
      std::lock_guard lock(mutex);
      queue.push_back(steady_ns());
    }
    ready.notify_one();
  }
  {
    std::lock_guard lock(mutex);
    done = true;
  }
  ready.notify_one();
  consumer.join();
  std::string line = "histogram";
  for (int b = 0; b < kBuckets; ++b) {
    if (histogram[b] > 0) line += " " + std::to_string(b) + ":" + std::to_string(histogram[b]);
  }
  return percentiles(line);
}

double example_ms(const std::string& extra, int repeat) {
  std::vector<double> times;
  for (int r = 0; r < repeat; ++r) {
    const auto start = Clock::now();
    run_command(std::string(SAGE_EXAMPLE_BINARY) + " " + extra + " >/dev/null");
    times.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  return median(times);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "--job") return run_job(argc, argv);
  const sage::bench::BenchOptions options =
      sage::bench::parse_bench_options(argc, argv, 20'000'000);
  const long long records = options.records;
  const int repeat = options.repeat;
  const std::string& json_path = options.json_path;
  const std::string self = std::filesystem::canonical("/proc/self/exe").string();
  LocalCluster cluster;
  const std::string stamp = cluster.state_dir() + "/first-record.stamp";
  const long long kib_records = std::max(1LL, records / 20);
  const double loopback = loopback_bandwidth(std::size_t{2} << 30) / 1e6;  // MB/s

  std::vector<Row> rows;
  const std::string small = "w4 " + std::to_string(records) + " 0";
  const double w4_small = measure(self, small, repeat);
  rows.push_back({"W4 8 B cross-process", "rec/s", w4_small,
                  measure(self, small + " --local", repeat), "same job, one process"});
  rows.push_back(
      {"W4 8 B cross-process", "MB/s", w4_small * 8 / 1e6, loopback, "loopback TCP, 1 connection"});
  const std::string large = "w4 " + std::to_string(kib_records) + " 1024";
  const double w4_large = measure(self, large, repeat);
  rows.push_back({"W4 1 KiB cross-process", "rec/s", w4_large,
                  measure(self, large + " --local", repeat), "same job, one process"});
  rows.push_back({"W4 1 KiB cross-process", "MB/s", w4_large * 1024 / 1e6, loopback,
                  "loopback TCP, 1 connection"});
  rows.push_back({"W6 submit->first record", "ms", measure(self, "first-record " + stamp, repeat),
                  measure(self, "first-record " + stamp + " --local", repeat), "LocalEnvironment"});
  example_ms("", 1);  // uploads the example once; later runs find it by hash
  rows.push_back({"W6 reference example", "ms", example_ms("", repeat),
                  example_ms("--local", repeat), "the example with --local"});

  // W5: the highest rate of the latency job, then latencies at 10 % and 50 % of it.
  for (const bool local : {true, false}) {
    const std::string where = local ? "local" : "cross-process";
    const double max_rate = measure(self,
                                    "latency " + std::to_string(std::min(records, 5'000'000LL)) +
                                        " 0" + (local ? " --local" : ""),
                                    1);
    for (const double load : {0.1, 0.5}) {
      const Latency sage_latency = job_latency(self, load * max_rate, local);
      const Latency baseline = handoff_latency(load * max_rate);
      const std::string name =
          "W5 " + where + " " + std::to_string(static_cast<int>(load * 100)) + "% load";
      rows.push_back({name + " p50", "ms", sage_latency.p50_ms, baseline.p50_ms,
                      "one thread hand-off, same rate"});
      rows.push_back({name + " p99", "ms", sage_latency.p99_ms, baseline.p99_ms,
                      "one thread hand-off, same rate"});
    }
    std::printf("W5 %s: highest rate %.3g records/s\n", where.c_str(), max_rate);
  }

  {
    const LocalCluster encrypted(true);
    rows.push_back({"W4 8 B cross-process TLS", "rec/s", measure(self, small, repeat), w4_small,
                    "same job without TLS"});
    rows.push_back({"W4 1 KiB cross-process TLS", "MB/s", measure(self, large, repeat) * 1024 / 1e6,
                    w4_large * 1024 / 1e6, "same job without TLS"});
  }

  std::printf("%-30s %-6s %14s %14s %8s  %s\n", "workload", "unit", "sage", "baseline", "ratio",
              "baseline is");
  for (const auto& r : rows) {
    std::printf("%-30s %-6s %14.4g %14.4g %8.3f  %s\n", r.workload.c_str(), r.unit.c_str(), r.sage,
                r.baseline, r.sage / r.baseline, r.baseline_name.c_str());
  }
  std::printf(
      "records per W4 run: %lld (8 B), %lld (1 KiB); median of %d; cluster: head + 2 "
      "workers on this machine\n",
      records, kib_records, repeat);
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << "{\"bench\": \"cluster_bench\", \"records\": " << records << ", \"repeat\": " << repeat
        << ", \"figures\": [";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      out << (i ? ", " : "") << "{\"workload\": \"" << r.workload << "\", \"unit\": \"" << r.unit
          << "\", \"sage\": " << r.sage << ", \"baseline\": " << r.baseline
          << ", \"ratio\": " << r.sage / r.baseline << ", \"baseline_is\": \"" << r.baseline_name
          << "\"}";
    }
    out << "]}\n";
  }
  return 0;
}
