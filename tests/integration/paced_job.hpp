// What the checkpointed test jobs (exactly_once_job, async_map_job) share: a
// paced replayable source, the line each instance prints so that a test can
// find its process, and the submit-wait-report tail of their main().
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <optional>
#include <thread>

#include <sage/sage.hpp>

namespace sage::testing {

// "instance <op>[i/p] on <node> pid <pid>": where a test finds the process to kill.
inline void announce(sage::RuntimeContext& ctx) {
  std::printf("instance %s on %s pid %d\n", ctx.instance_name().c_str(), ctx.node_id().c_str(),
              static_cast<int>(getpid()));
  std::fflush(stdout);
}

// The numbers below `count` that are this instance's index modulo the
// parallelism, with a 10 ms pause every 100, so a job runs long enough for
// several checkpoints and a kill mid-run. Replayable: its position is its state.
class PacedNumbers {
 public:
  explicit PacedNumbers(long long count) : count_(count) {}
  void open(sage::RuntimeContext& ctx) {
    next_ = ctx.parallel_index();
    step_ = ctx.parallelism();
    announce(ctx);
  }
  std::optional<long long> next() {
    if (next_ >= count_) return std::nullopt;
    if ((next_ / step_) % 100 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const long long value = next_;
    next_ += step_;
    return value;
  }
  void save_state(sage::Writer& out) { out.write(next_); }
  void restore_state(sage::Reader& in) { next_ = in.read<long long>(); }

 private:
  long long count_, next_ = 0, step_ = 1;
};

// Submits the job, waits for its end and prints "submitted <id>", then
// "job <id> <STATE>, <n> restarts, <n> checkpoints" and a line per restart
// cause; the exit status of main: 0, or 1 with the error on stderr.
inline int submit_and_report(sage::Environment& env) {
  try {
    std::printf("submitted %s\n", env.submit().c_str());
    std::fflush(stdout);
    const auto result = env.wait();
    std::printf("job %s %s, %d restarts, %llu checkpoints\n", result.job_id.c_str(),
                sage::to_string(result.state), result.restarts,
                static_cast<unsigned long long>(result.checkpoints_completed));
    for (const auto& cause : result.restart_causes) {
      std::printf("restarted after: %s\n", cause.c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}

}  // namespace sage::testing
