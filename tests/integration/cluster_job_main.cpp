// Jobs the cluster tests submit, one program for all (the program is the job):
//   keyed N     N numbers, key_by and parallelism on every stage; each sink
//               prints the final count and sum of every key it saw
//   keyed-2p N  the same, with two task processes per node
//   unbounded   an endless source; submits and prints the job id
//   reserving   the same, with 3 instances that each hold 2 CPUs
//   shuffle N   N numbers rebalanced both ways between processes through tiny
//               queues (batch 16, capacity 1); prints the count at the sinks
//   throw       an operator that throws on record 7
//   greedy      an operator that asks for 64 CPUs per instance
//   crowd       4 instances of 2 CPUs each: each fits a node, all do not
//   fragmented  4 instances of 1.5 CPUs each: 6 CPUs, as many as 3 nodes of 2
//               have, but only one fits on each node
//   packable    3 instances of 1 CPU, then 1 of 2 CPUs: on three 2-CPU nodes,
//               spreading the small ones first leaves no room for the big one
//   gpus        3 instances of 1 GPU each; each prints the GPUs it holds and
//               the CUDA_VISIBLE_DEVICES of its process
//   gpu-hog     like unbounded, with one instance that holds a GPU
//   tls-env     3 instances print the TLS files their process was given
//   loud        a sink that prints 200 lines of 60 000 characters, and a line
//               with bytes that are not UTF-8 between "before" and "after"
//   early-source, early-map, bad-partitioner
//               3 endless sources, rebalanced to 3 maps and 3 sinks, where
//               source instance 0 throws at once, map instance 0 throws on its
//               first record, or a partitioner returns an index out of range
//   metrics     1..100 through 2 instances that count records ("seen"), set a
//               gauge ("last") and record a histogram ("value"); prints the
//               job id and what its JobResult says of them
//   gated N F   N numbers from one source to 3 instances that say where they
//               run; the source stops halfway until file F exists
//   diagnosable an endless source into "slow" (2 instances that take 0.5 ms
//               a record: the bottleneck), key_by a key that is 0 for 9 of
//               10 records into "skewed" (3 instances: skew), then a sink
//               that prints a line every 5000 records; submits and prints
//               the job id
//   near-memory-limit
//               an endless source into "hoard", which declares 256 MB and
//               holds 228 MiB (its process: about 95% of its limit); submits
//               and prints the job id
// RemoteEnvironment (at $SAGE_ADDRESS) unless the last argument is --local.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sage/sage.hpp>

namespace {

using Keyed = std::pair<long long, long long>;  // key, value

// Running count and sum per key, in keyed state.
class KeyedTotals : public sage::Function {
 public:
  void open(sage::RuntimeContext& ctx) override {
    count_.emplace(ctx.value_state<long long>("count"));
    sum_.emplace(ctx.value_state<long long>("sum"));
  }
  std::tuple<long long, long long, long long> map(const Keyed& record) {
    const long long count = ++count_->get_or_init(0);
    sum_->get_or_init(0) += record.second;
    return {record.first, count, sum_->get_or_init(0)};
  }

 private:
  std::optional<sage::ValueState<long long>> count_, sum_;
};

// Keeps the last (largest) count per key and prints the finals at the end.
class FinalsSink : public sage::Function {
 public:
  void sink(const std::tuple<long long, long long, long long>& r) {
    auto& [count, sum] = finals_[std::get<0>(r)];
    if (std::get<1>(r) > count) {
      count = std::get<1>(r);
      sum = std::get<2>(r);
    }
  }
  void close() override {
    std::string out;
    for (const auto& [key, final] : finals_) {
      out += "final " + std::to_string(key) + " " + std::to_string(final.first) + " " +
             std::to_string(final.second) + "\n";
    }
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
  }

 private:
  std::map<long long, std::pair<long long, long long>> finals_;
};

// Says where it runs, so tests can find the task processes.
class Announce : public sage::Function {
 public:
  void open(sage::RuntimeContext& ctx) override {
    std::printf("instance %s on %s pid %d\n", ctx.instance_name().c_str(), ctx.node_id().c_str(),
                static_cast<int>(getpid()));
    std::fflush(stdout);
  }
  long long map(long long x) { return x; }
};

// Says which GPUs it holds and which its process sees.
class GpuReport : public sage::Function {
 public:
  void open(sage::RuntimeContext& ctx) override {
    std::string ids;
    for (int id : ctx.gpu_ids()) ids += (ids.empty() ? "" : ",") + std::to_string(id);
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    std::printf("gpu %s on %s pid %d holds [%s] of [%s]\n", ctx.instance_name().c_str(),
                ctx.node_id().c_str(), static_cast<int>(getpid()), ids.c_str(),
                visible != nullptr ? visible : "unset");
    std::fflush(stdout);
  }
  int map(int x) { return x; }
};

void keyed(sage::Environment& env, long long records) {
  env.from_sequence(0, records, {.name = "numbers", .parallelism = 2})
      .map(
          [](long long x) {
            return Keyed{x % 1000, x};
          },
          {.name = "bucket", .parallelism = 3})
      .key_by([](const Keyed& r) { return r.first; })
      .map<KeyedTotals>(sage::Options{.name = "totals", .parallelism = 2})
      .sink<FinalsSink>(sage::Options{.name = "finals", .parallelism = 2});
}

void unbounded(sage::Environment& env, bool reserving) {
  sage::Options announce{.name = "announce", .parallelism = 3};
  if (reserving) announce.resources = sage::Resources{.num_cpus = 2};
  env.from_source(
         [n = 0LL]() mutable -> std::optional<long long> {
           if (++n % 1000 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
           return n;
         },
         {.name = "endless"})
      .map<Announce>(announce)
      .sink([](long long) {}, {.name = "discard", .parallelism = 3});
}

// Holds (and has touched) 228 MiB while it runs.
class Hoard : public sage::Function {
 public:
  void open(sage::RuntimeContext&) override { memory_.assign(std::size_t{228} << 20, 1); }
  long long map(long long x) { return x + memory_[static_cast<std::size_t>(x) % memory_.size()]; }

 private:
  std::vector<char> memory_;
};

void near_memory_limit(sage::Environment& env) {
  env.from_source(
         [n = 0LL]() mutable -> std::optional<long long> {
           std::this_thread::sleep_for(std::chrono::milliseconds(1));
           return ++n;
         },
         {.name = "endless"})
      .map<Hoard>(sage::Options{.name = "hoard", .resources = sage::Resources{.memory = "256MB"}})
      .sink([](long long) {}, {.name = "discard"});
}

void diagnosable(sage::Environment& env) {
  env.from_source([n = 0LL]() mutable -> std::optional<long long> { return ++n; },
                  {.name = "endless"})
      .map(
          [](long long x) {
            std::this_thread::sleep_for(std::chrono::microseconds(500));
            return x;
          },
          {.name = "slow", .parallelism = 2})
      .key_by([](long long x) { return x % 10 == 0 ? x % 7 : 0LL; })
      .map([](long long x) { return x; }, {.name = "skewed", .parallelism = 3})
      .sink(
          [n = 0LL](long long x) mutable {
            if (++n % 5000 == 0) {
              std::printf("discard: %lld records, the last %lld\n", n, x);
              std::fflush(stdout);
            }
          },
          {.name = "discard"});
}

void shuffle(sage::Environment& env, long long records) {
  env.from_sequence(0, records, {.name = "numbers", .parallelism = 4})
      .rebalance()
      .map([](long long x) { return x * 2; }, {.name = "double", .parallelism = 3})
      .rebalance()
      .filter([](long long x) { return x % 3 == 0; }, {.name = "thirds", .parallelism = 2})
      .sink([](long long) {}, {.name = "discard", .parallelism = 2});
}

void throwing(sage::Environment& env) {
  env.from_collection(std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9}, {.name = "numbers"})
      .map(
          [](int x) {
            if (x == 7) throw std::runtime_error("boom on record 7");
            return x;
          },
          {.name = "explode", .parallelism = 2})
      .sink([](int) {}, {.name = "discard"});
}

void greedy(sage::Environment& env) {
  env.from_collection(std::vector<int>{1, 2, 3}, {.name = "numbers"})
      .map([](int x) { return x; },
           {.name = "hungry", .parallelism = 1, .resources = sage::Resources{.num_cpus = 64}})
      .sink([](int) {}, {.name = "discard"});
}

void wide(sage::Environment& env, double cpus, int parallelism = 4) {
  env.from_collection(std::vector<int>{1, 2, 3}, {.name = "numbers"})
      .map([](int x) { return x; }, {.name = "wide",
                                     .parallelism = parallelism,
                                     .resources = sage::Resources{.num_cpus = cpus}})
      .sink([](int) {}, {.name = "discard"});
}

// Endless; with `fail`, instance 0 throws at once.
class EarlyFailingSource : public sage::Function {
 public:
  explicit EarlyFailingSource(bool fail) : fail_(fail) {}
  void open(sage::RuntimeContext& ctx) override { fail_ = fail_ && ctx.parallel_index() == 0; }
  std::optional<long long> next() {
    if (fail_) throw std::runtime_error("source instance 0 fails at once");
    return ++n_;
  }

 private:
  bool fail_;
  long long n_ = 0;
};

// With `fail`, instance 0 throws on its first record.
class EarlyFailingMap : public sage::Function {
 public:
  explicit EarlyFailingMap(bool fail) : fail_(fail) {}
  void open(sage::RuntimeContext& ctx) override { fail_ = fail_ && ctx.parallel_index() == 0; }
  long long map(long long x) {
    if (fail_) throw std::runtime_error("map instance 0 fails on its first record");
    return x;
  }

 private:
  bool fail_;
};

// early-source, early-map and bad-partitioner: one operator fails early
// while the job's other processes run on.
void early_failure(sage::Environment& env, const std::string& mode) {
  auto numbers = env.from_source<EarlyFailingSource>(
      sage::Options{.name = "numbers", .parallelism = 3}, mode == "early-source");
  auto spread = mode == "bad-partitioner"
                    ? numbers.partition_custom([](long long, int partitions) { return partitions; })
                    : numbers.rebalance();
  spread.map<EarlyFailingMap>(sage::Options{.name = "relay", .parallelism = 3}, mode == "early-map")
      .sink([](long long) {}, {.name = "discard", .parallelism = 3});
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const bool local = std::string(argv[argc - 1]) == "--local";
  sage::ExecutionConfig config;
  if (mode == "keyed-2p") config.task_processes_per_node = 2;
  if (mode == "shuffle") {
    config.batch_size = 16;
    config.channel_capacity = 1;
  }
  std::unique_ptr<sage::Environment> env;
  if (local) {
    env = std::make_unique<sage::LocalEnvironment>("cluster-test-" + mode, config);
  } else {
    env = std::make_unique<sage::RemoteEnvironment>("cluster-test-" + mode, "127.0.0.1", 19001,
                                                    sage::ClusterConfig{}, config);
  }
  try {
    if (mode == "keyed" || mode == "keyed-2p") {
      keyed(*env, argc > 2 ? std::atoll(argv[2]) : 1000);
    } else if (mode == "diagnosable" || mode == "near-memory-limit") {
      if (mode == "diagnosable") {
        diagnosable(*env);
      } else {
        near_memory_limit(*env);
      }
      std::printf("submitted %s\n", env->submit(false).c_str());
      return 0;
    } else if (mode == "unbounded" || mode == "reserving") {
      unbounded(*env, mode == "reserving");
      std::printf("submitted %s\n", env->submit(false).c_str());
      return 0;
    } else if (mode == "shuffle") {
      shuffle(*env, argc > 2 ? std::atoll(argv[2]) : 1000);
    } else if (mode == "throw") {
      throwing(*env);
    } else if (mode == "greedy") {
      greedy(*env);
    } else if (mode == "crowd" || mode == "fragmented") {
      wide(*env, mode == "crowd" ? 2 : 1.5);
    } else if (mode == "pair") {
      wide(*env, 1, 2);
    } else if (mode == "gpu-hog") {
      env->from_source(
             [n = 0]() mutable -> std::optional<int> {
               std::this_thread::sleep_for(std::chrono::milliseconds(1));
               return ++n;
             },
             {.name = "endless"})
          .map<GpuReport>(sage::Options{.name = "hog", .resources = sage::Resources{.num_gpus = 1}})
          .sink([](int) {}, {.name = "discard"});
      std::printf("submitted %s\n", env->submit(false).c_str());
      return 0;
    } else if (mode == "tls-env") {
      env->from_collection(std::vector<int>{1, 2, 3}, {.name = "numbers"})
          .map(
              [](int x) {
                const char* ca = std::getenv("SAGE_TLS_CA");
                const char* cert = std::getenv("SAGE_TLS_CERT");
                std::printf("tls ca=%s cert=%s pid %d\n", ca != nullptr ? ca : "unset",
                            cert != nullptr ? cert : "unset", static_cast<int>(getpid()));
                std::fflush(stdout);
                return x;
              },
              {.name = "report", .parallelism = 3})
          .sink([](int) {}, {.name = "discard"});
    } else if (mode == "packable") {
      env->from_collection(std::vector<int>{1, 2, 3}, {.name = "numbers"})
          .map([](int x) { return x; },
               {.name = "small", .parallelism = 3, .resources = sage::Resources{.num_cpus = 1}})
          .map([](int x) { return x; },
               {.name = "big", .parallelism = 1, .resources = sage::Resources{.num_cpus = 2}})
          .sink([](int) {}, {.name = "discard"});
    } else if (mode == "loud") {
      env->from_collection(std::vector<int>{1}, {.name = "one"})
          .sink(
              [](int) {
                for (int i = 0; i < 200; ++i) {
                  std::cout << "long " << i << ' ' << std::string(60'000, 'x') << '\n';
                }
                std::cout << "before\n"
                          << "bad \xff\xfe bytes\n"
                          << "after" << std::endl;
              },
              {.name = "loud"});
    } else if (mode == "metrics") {
      class Measured : public sage::Function {
       public:
        void open(sage::RuntimeContext& ctx) override {
          seen_ = &ctx.metrics().counter("seen");
          last_ = &ctx.metrics().gauge("last");
          values_ = &ctx.metrics().histogram("value");
        }
        int map(int x) {
          seen_->inc();
          last_->set(x);
          values_->record(x);
          return x;
        }

       private:
        sage::Counter* seen_ = nullptr;
        sage::Gauge* last_ = nullptr;
        sage::Histogram* values_ = nullptr;
      };
      std::vector<int> numbers(100);
      for (int i = 0; i < 100; ++i) numbers[i] = i + 1;
      env->from_collection(numbers, {.name = "numbers"})
          .rebalance()
          .map<Measured>(sage::Options{.name = "measured", .parallelism = 2})
          .sink([](int) {}, {.name = "discard"});
      const auto result = env->execute();
      std::int64_t seen = 0;
      sage::HistogramSnapshot values;
      int gauges = 0;
      for (const auto& s : result.instances) {
        if (s.operator_name != "measured") continue;
        seen += s.user_metrics.counters.at("seen");
        gauges += static_cast<int>(s.user_metrics.gauges.count("last"));
        values.merge(s.user_metrics.histograms.at("value"));
      }
      std::printf("job %s: seen %lld, %d gauges, values count %llu sum %g max %g\n%s",
                  result.job_id.c_str(), static_cast<long long>(seen), gauges,
                  static_cast<unsigned long long>(values.count), values.sum, values.max,
                  result.user_metrics_table().c_str());
      return 0;
    } else if (mode == "gated") {
      const long long records = argc > 2 ? std::atoll(argv[2]) : 1000;
      const std::string gate = argc > 3 ? argv[3] : "";
      env->from_source(
             [n = 0LL, records, gate]() mutable -> std::optional<long long> {
               if (n == records) return std::nullopt;
               while (n == records / 2 && access(gate.c_str(), F_OK) != 0) {
                 std::this_thread::sleep_for(std::chrono::milliseconds(10));
               }
               return n++;
             },
             {.name = "numbers"})
          .map<Announce>(sage::Options{.name = "announce", .parallelism = 3})
          .sink([](long long) {}, {.name = "discard", .parallelism = 3});
    } else if (mode == "gpus") {
      env->from_collection(std::vector<int>{1, 2, 3}, {.name = "numbers"})
          .map<GpuReport>(sage::Options{
              .name = "gpu", .parallelism = 3, .resources = sage::Resources{.num_gpus = 1}})
          .sink([](int) {}, {.name = "discard"});
    } else if (mode == "orphan") {
      // Leaves a child behind that holds the task process's output open.
      env->from_collection(std::vector<int>{1}, {.name = "numbers"})
          .sink(
              [](int) {
                std::cout << std::flush;
                const pid_t child = fork();
                if (child == 0) {
                  for (;;) pause();
                }
                std::cout << "left child " << child << " behind" << std::endl;
              },
              {.name = "discard"});
    } else if (mode == "early-source" || mode == "early-map" || mode == "bad-partitioner") {
      early_failure(*env, mode);
    } else if (mode == "memory-hog") {
      // Declares 256 MB and touches up to 4 GiB, 64 MiB at a time; it must be killed on the way.
      env->from_collection(std::vector<int>{1}, {.name = "numbers"})
          .map(
              [](int x) {
                std::vector<std::unique_ptr<char[]>> chunks;
                for (int i = 0; i < 64; ++i) {
                  chunks.push_back(std::make_unique<char[]>(64 << 20));
                  std::memset(chunks.back().get(), 1, 64 << 20);
                }
                return x + static_cast<int>(chunks.size());
              },
              {.name = "hog", .resources = sage::Resources{.memory = "256MB"}})
          .sink([](int) {}, {.name = "discard"});
    } else {
      std::fprintf(
          stderr,
          "usage: %s keyed N|shuffle N|unbounded|reserving|throw|greedy|crowd|fragmented|pair|"
          "packable|gpus|gpu-hog|memory-hog|orphan|tls-env|loud|early-source|early-map|"
          "bad-partitioner|metrics|gated N F|diagnosable|near-memory-limit [--local]\n",
          argv[0]);
      return 2;
    }
    const auto result = env->execute();
    std::uint64_t at_sinks = 0;
    for (const auto& s : result.instances) {
      if (s.operator_name == "discard") at_sinks += s.records_in;
    }
    std::printf("job %s %s, %llu records at the sinks\n", result.job_id.c_str(),
                sage::to_string(result.state), static_cast<unsigned long long>(at_sinks));
    return 0;
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
}
