// The asynchronous map against the same work done synchronously, in the same
// run: every call answers after a fixed delay (a timer thread completes it 1
// ms later, as a remote service would), with AsyncOptions::capacity 64 on
// one instance, against a map that sleeps 1 ms per record. Prints both
// throughputs, their ratio, and how close the asynchronous map comes to its
// bound, capacity / delay.
//
//   async_bench [--records N] [--repeat R] [--json FILE]
// N: records of the asynchronous run (the synchronous one takes N / 50).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>
#include <vector>

#include <sage/sage.hpp>

#include "bench_options.hpp"
#include "measure.hpp"
#include "support/delayed_calls.hpp"

namespace {

using sage::bench::median;

using Clock = std::chrono::steady_clock;
constexpr std::size_t kCapacity = 64;
constexpr auto kDelay = std::chrono::milliseconds(1);

// Runs the job that `build` adds to a fresh environment over `records`
// numbers; returns records per second, after checking that all came out.
template <class Build>
double run(const char* name, long long records, Build build) {
  auto count = std::make_shared<std::atomic<long long>>(0);
  sage::LocalEnvironment env(name);
  build(env.from_sequence(0, records)).sink([count](long long) { ++*count; });
  const auto start = Clock::now();
  env.execute();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (count->load() != records) {
    std::fprintf(stderr, "%s: %lld records out, expected %lld\n", name, count->load(), records);
    std::exit(1);
  }
  return static_cast<double>(records) / seconds;
}

}  // namespace

int main(int argc, char** argv) {
  const auto options = sage::bench::parse_bench_options(argc, argv, 200'000);
  const long long sync_records = std::max(200LL, options.records / 50);
  std::vector<double> async_rates, sync_rates;
  for (int i = 0; i < options.repeat; ++i) {
    sage::testing::DelayedCalls service;
    async_rates.push_back(run("async", options.records, [&](auto numbers) {
      return numbers.template map_async<long long>(
          [&service](const long long& x, sage::AsyncResult<long long> result) {
            service.after(kDelay, [x, result] { result.complete(x); });
          },
          sage::AsyncOptions{.capacity = kCapacity, .ordered = true});
    }));
    sync_rates.push_back(run("sync", sync_records, [](auto numbers) {
      return numbers.map([](long long x) {
        std::this_thread::sleep_for(kDelay);
        return x;
      });
    }));
  }
  const double async_rate = median(async_rates), sync_rate = median(sync_rates);
  const double bound =
      static_cast<double>(kCapacity) / std::chrono::duration<double>(kDelay).count();
  std::printf("%-34s %14s\n", "workload (1 ms per call, 1 instance)", "rec/s");
  std::printf("%-34s %14.0f\n", "async map, capacity 64", async_rate);
  std::printf("%-34s %14.0f\n", "sync map, sleeping 1 ms", sync_rate);
  std::printf("ratio async / sync: %.1f; bound capacity / delay: %.0f rec/s, reached %.2f of it\n",
              async_rate / sync_rate, bound, async_rate / bound);
  std::printf("(records: %lld async, %lld sync; median of %d)\n", options.records, sync_records,
              options.repeat);
  if (!options.json_path.empty()) {
    std::ofstream json(options.json_path);
    json << "{\"async_rec_per_s\": " << async_rate << ", \"sync_rec_per_s\": " << sync_rate
         << ", \"ratio\": " << async_rate / sync_rate << ", \"bound_rec_per_s\": " << bound
         << "}\n";
  }
  return 0;
}
