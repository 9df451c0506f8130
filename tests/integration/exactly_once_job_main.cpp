// The job of the fault-tolerance tests (fault_tolerance_test.cpp):
//   exactly_once_job OUTPUT_DIR RECORDS [--local | crash=WHERE:C:I | checkpoints=DIR]
// A paced replayable source (2 instances) of RECORDS numbers, key_by into a
// running count per key in keyed state (3 instances), then write_text into
// OUTPUT_DIR (2 instances): one line "key count number" per record, the same
// set of lines in every run however it fails, since each key's numbers come
// from one source instance, in order. Checkpoints every 200 ms.
//
// crash=WHERE:C:I (an argument: the task processes run the program with its
// arguments) makes a process exit at once, as a crash would, at checkpoint
// C: snapshot, in the save of counter instance I; after-store, once counter
// instance I's snapshot is stored, before it is acknowledged; in-commit, when
// write_text instance I has committed the first of its files (the last two
// are the engine's crash points, sage/detail/crash_point.hpp).
// checkpoints=DIR sets ExecutionConfig::checkpoint_directory (else they go
// to the head). Each instance prints "instance NAME on NODE pid PID" when it
// opens.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include <sage/sage.hpp>

#include "integration/paced_job.hpp"

namespace {

using sage::testing::announce;
using sage::testing::PacedNumbers;

struct CrashPoint {
  std::string where;  // "snapshot", "commit" or empty
  std::uint64_t checkpoint = 0;
  int instance = -1;
};

CrashPoint crash_point(const char* text) {
  CrashPoint point;
  char where[16] = {};
  unsigned long long checkpoint = 0;
  int instance = -1;
  if (std::sscanf(text, "crash=%15[a-z-]:%llu:%d", where, &checkpoint, &instance) == 3) {
    point = {where, checkpoint, instance};
  }
  return point;
}

// A running count per key; the crash point "snapshot" is in its save.
class Counter : public sage::Function {
 public:
  explicit Counter(CrashPoint crash) : crash_(std::move(crash)) {}
  void open(sage::RuntimeContext& ctx) override {
    count_.emplace(ctx.value_state<long long>("count"));
    index_ = ctx.parallel_index();
    announce(ctx);
  }
  std::string map(long long x) {
    return std::to_string(key_of(x)) + " " + std::to_string(++count_->get_or_init(0)) + " " +
           std::to_string(x);
  }
  // Each key's numbers come from one source instance (its parity).
  static long long key_of(long long x) { return (x / 2) % 97 * 2 + x % 2; }
  void save_state(sage::Writer& out, std::uint64_t checkpoint) {
    if (crash_.where == "snapshot" && crash_.checkpoint == checkpoint &&
        crash_.instance == index_) {
      std::_Exit(9);
    }
    out.write(index_);
  }
  void restore_state(sage::Reader& in) { in.read<int>(); }

 private:
  CrashPoint crash_;
  std::optional<sage::ValueState<long long>> count_;
  int index_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: %s OUTPUT_DIR RECORDS [--local | crash=WHERE:C:I | checkpoints=DIR]\n",
                 argv[0]);
    return 2;
  }
  const std::string output = argv[1];
  const long long records = std::atoll(argv[2]);
  const bool local = argc > 3 && std::string(argv[3]) == "--local";
  sage::ExecutionConfig config;
  config.checkpoint_interval = std::chrono::milliseconds(200);
  config.restart_delay = std::chrono::milliseconds(100);
  if (argc > 3 && std::string(argv[3]).starts_with("checkpoints=")) {
    config.checkpoint_directory = std::string(argv[3]).substr(std::string("checkpoints=").size());
  }
  std::unique_ptr<sage::Environment> env;
  if (local) {
    env = std::make_unique<sage::LocalEnvironment>("exactly-once", config);
  } else {
    env = std::make_unique<sage::RemoteEnvironment>("exactly-once", "127.0.0.1", 19001,
                                                    sage::ClusterConfig{}, config);
  }
  const CrashPoint crash = crash_point(argc > 3 ? argv[3] : "");
  if (crash.where == "after-store" || crash.where == "in-commit") {
    const std::string instance = crash.where == "after-store"
                                     ? "counter[" + std::to_string(crash.instance) + "/3]"
                                     : "lines[" + std::to_string(crash.instance) + "/2]";
    const std::string point = crash.where + ":" + std::to_string(crash.checkpoint) + ":" + instance;
    setenv("SAGE_CRASH_POINT", point.c_str(), 1);
  }
  env->from_source<PacedNumbers>(sage::Options{.name = "numbers", .parallelism = 2}, records)
      .key_by([](long long x) { return Counter::key_of(x); })
      .map<Counter>(sage::Options{.name = "counter", .parallelism = 3}, crash)
      .rebalance()
      .write_text(output, {.name = "lines", .parallelism = 2});
  return sage::testing::submit_and_report(*env);
}
