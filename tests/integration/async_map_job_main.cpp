// The job of the asynchronous map's cluster tests (async_map_cluster_test.cpp):
//   async_map_job OUTPUT_DIR RECORDS [--local | crash=after-store:C:I]
// A paced replayable source (2 instances) of RECORDS numbers, rebalanced into
// an asynchronous map "fetch" (3 instances, capacity 64, unordered) whose
// calls a timer thread answers 5 ms later, as a remote service would, then
// write_text into OUTPUT_DIR (2 instances): one line "x 3x+1" per number.
// Checkpoints every 200 ms, each with calls in flight: fetch prints
// "checkpoint C: N calls in flight" at each.
//
// crash=after-store:C:I makes the task process of fetch instance I exit at
// once after it stored its snapshot of checkpoint C (the engine's crash
// point, sage/detail/crash_point.hpp); the job restarts from the last
// completed checkpoint and issues the calls that were in flight again.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include <sage/sage.hpp>

#include "integration/paced_job.hpp"

#include "support/delayed_calls.hpp"

namespace {

using sage::testing::announce;
using sage::testing::PacedNumbers;

class Fetch : public sage::AsyncFunction<long long, std::string> {
 public:
  void open(sage::RuntimeContext& ctx) override {
    name_ = ctx.instance_name();
    announce(ctx);
  }
  void invoke(const long long& x, sage::AsyncResult<std::string> result) override {
    ++in_flight_;
    calls_.after(std::chrono::milliseconds(5), [this, x, result] {
      --in_flight_;
      result.complete(std::to_string(x) + " " + std::to_string(3 * x + 1));
    });
  }
  sage::AsyncOptions async_options() const override { return {.capacity = 64, .ordered = false}; }
  void save_state(sage::Writer&, std::uint64_t checkpoint) {
    std::printf("checkpoint %llu: %d calls in flight in %s\n",
                static_cast<unsigned long long>(checkpoint), in_flight_.load(), name_.c_str());
    std::fflush(stdout);
  }
  void restore_state(sage::Reader&) {}

 private:
  std::string name_;
  std::atomic<int> in_flight_{0};
  sage::testing::DelayedCalls calls_;  // last: stopped before the rest goes
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR RECORDS [--local | crash=after-store:C:I]\n",
                 argv[0]);
    return 2;
  }
  const std::string output = argv[1];
  const long long records = std::atoll(argv[2]);
  const std::string option = argc > 3 ? argv[3] : "";
  sage::ExecutionConfig config;
  config.checkpoint_interval = std::chrono::milliseconds(200);
  config.restart_delay = std::chrono::milliseconds(100);
  if (option.starts_with("crash=")) {
    // crash=after-store:C:I arms the engine's crash point in fetch[I/3]'s task.
    const std::string spec = option.substr(6);
    const std::string point =
        spec.substr(0, spec.rfind(':')) + ":fetch[" + spec.substr(spec.rfind(':') + 1) + "/3]";
    setenv("SAGE_CRASH_POINT", point.c_str(), 1);
  }
  std::unique_ptr<sage::Environment> env;
  if (option == "--local") {
    env = std::make_unique<sage::LocalEnvironment>("async-map", config);
  } else {
    env = std::make_unique<sage::RemoteEnvironment>("async-map", "127.0.0.1", 19001,
                                                    sage::ClusterConfig{}, config);
  }
  env->from_source<PacedNumbers>(sage::Options{.name = "numbers", .parallelism = 2}, records)
      .rebalance()
      .map<Fetch>(sage::Options{.name = "fetch", .parallelism = 3})
      .rebalance()
      .write_text(output, {.name = "lines", .parallelism = 2});
  return sage::testing::submit_and_report(*env);
}
