// Checkpoints of jobs in this process: barriers through real tasks and
// channels, alignment, the final checkpoint and its commit, and what is
// refused.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <numeric>
#include <thread>

#include <sage/sage.hpp>

#include "support/collect.hpp"
#include "support/committed_lines.hpp"
#include "support/temp_dir.hpp"

namespace sage {
namespace {

using namespace std::chrono_literals;

// Emits [0, count) in steps of its parallelism, pausing now and then so that
// checkpoints happen while it runs; replayable.
class PacedSource {
 public:
  PacedSource(long long count, std::chrono::microseconds pause) : count_(count), pause_(pause) {}
  void open(RuntimeContext& ctx) {
    next_ = ctx.parallel_index();
    step_ = ctx.parallelism();
  }
  std::optional<long long> next() {
    if (next_ >= count_) return std::nullopt;
    if (next_ % 200 < step_) std::this_thread::sleep_for(pause_);
    const long long value = next_;
    next_ += step_;
    return value;
  }
  void save_state(Writer& out) { out.write(next_); }
  void restore_state(Reader& in) { next_ = in.read<long long>(); }

 private:
  long long count_, next_ = 0, step_ = 1;
  std::chrono::microseconds pause_;
};

ExecutionConfig checkpointed(const testing::TempDir& dir, std::chrono::milliseconds interval) {
  ExecutionConfig config;
  config.checkpoint_interval = interval;
  config.checkpoint_directory = dir.path();
  config.batch_size = 64;
  return config;
}

std::vector<long long> run_doubling(ExecutionConfig config, JobResult* result) {
  LocalEnvironment env("checkpointed", config);
  auto collected = std::make_shared<testing::Collected<long long>>();
  // About 0.5 s: long enough for periodic checkpoints on a loaded machine.
  env.from_source<PacedSource>(Options{.name = "paced", .parallelism = 2}, 40'000LL, 5ms)
      .rebalance()
      .map([](long long x) { return 2 * x; }, {.parallelism = 3})
      .sink<testing::CollectSink<long long>>(Options{.parallelism = 2}, collected);
  *result = env.execute();
  return collected->sorted();
}

TEST(CheckpointTest, ACheckpointedJobDeliversExactlyTheRecordsOfOneWithout) {
  testing::TempDir dir;
  JobResult plain, with;
  const auto expected = run_doubling(ExecutionConfig{.batch_size = 64}, &plain);
  const auto actual = run_doubling(checkpointed(dir, 5ms), &with);
  EXPECT_EQ(with.state, JobState::kFinished);
  ASSERT_EQ(actual.size(), 40'000u);
  EXPECT_TRUE(actual == expected);
  EXPECT_GE(with.checkpoints_completed, 2u) << "checkpoints while it ran, then the final one";
  EXPECT_EQ(with.checkpoints_failed, 0u);
  EXPECT_GE(with.last_checkpoint_id, with.checkpoints_completed);  // aborted ones take ids too
  EXPECT_GT(with.last_checkpoint_bytes, 0u);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "a local job's checkpoints outlived it";
}

// A map whose members are checkpointed: it sees each hook in order.
class Auditing {
 public:
  explicit Auditing(std::shared_ptr<std::vector<std::string>> log) : log_(std::move(log)) {}
  long long map(long long x) {
    ++seen_;
    return x;
  }
  void save_state(Writer& out) {
    out.write(seen_);
    record("save");
  }
  void restore_state(Reader& in) { seen_ = in.read<long long>(); }
  void notify_checkpoint_complete(std::uint64_t id) {
    if (id <= last_complete_) record("complete out of order");
    last_complete_ = id;
    record("complete");
  }
  void close() { record("close"); }

 private:
  void record(const std::string& what) {
    static std::mutex mutex;
    std::lock_guard lock(mutex);
    if (log_->empty() || log_->back() != what) log_->push_back(what);
  }
  std::shared_ptr<std::vector<std::string>> log_;
  long long seen_ = 0;
  std::uint64_t last_complete_ = 0;
};

TEST(CheckpointTest, AFunctionSavesAtEachCheckpointAndHearsOfItsCompletionThenOfTheFinalOne) {
  testing::TempDir dir;
  auto log = std::make_shared<std::vector<std::string>>();
  LocalEnvironment env("hooks", checkpointed(dir, 2ms));
  env.from_source<PacedSource>(Options{.name = "paced"}, 20'000LL, 1ms)
      .map<Auditing>(Options{.name = "audit"}, log)
      .sink([](long long) {});
  const JobResult result = env.execute();
  ASSERT_GE(log->size(), 4u);
  EXPECT_EQ((*log)[0], "save");
  EXPECT_EQ((*log)[1], "complete");
  // The end: close(), then (after the commit of a checkpoint taken before
  // it, perhaps) the final checkpoint's one save and its commit.
  const auto close = std::find(log->begin(), log->end(), "close");
  ASSERT_NE(close, log->end());
  EXPECT_EQ(std::count(close, log->end(), "save"), 1);
  EXPECT_EQ(std::vector<std::string>(log->end() - 2, log->end()),
            (std::vector<std::string>{"save", "complete"}));
  EXPECT_EQ(std::count(log->begin(), log->end(), "complete out of order"), 0);
  EXPECT_GE(result.checkpoints_completed, 2u);
}

TEST(CheckpointTest, AJobWithASourceThatCannotReplayIsRefusedNamingIt) {
  testing::TempDir dir;
  LocalEnvironment env("refused", checkpointed(dir, 100ms));
  long long n = 0;
  env.from_source(
         [n]() mutable -> std::optional<long long> {
           return n < 10 ? std::optional(n++) : std::nullopt;
         },
         {.name = "tailing-log"})
      .sink([](long long) {});
  try {
    env.execute();
    FAIL() << "a source without save_state/restore_state ran with checkpoints on";
  } catch (const InvalidPlanError& e) {
    EXPECT_NE(std::string(e.what()).find("source 'tailing-log' cannot replay"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("save_state"), std::string::npos) << e.what();
  }
}

TEST(CheckpointTest, TheBuiltInSourcesReplay) {
  testing::TempDir dir;
  LocalEnvironment env("built-in", checkpointed(dir, 1ms));
  auto collected = std::make_shared<testing::Collected<long long>>();
  int calls = 0;
  auto numbers = env.from_sequence(0, 1000);
  auto listed = env.from_collection(std::vector<long long>{5, 6, 7});
  auto batch = env.from_batch([calls]() mutable -> std::optional<long long> {
    return calls < 3 ? std::optional<long long>(100 + calls++) : std::nullopt;
  });
  numbers.union_with(listed).union_with(batch).sink<testing::CollectSink<long long>>(Options{},
                                                                                     collected);
  EXPECT_EQ(env.execute().state, JobState::kFinished);
  EXPECT_EQ(collected->sorted().size(), 1006u);
}

// A slow sink behind two inputs, one fast, one that lags: the fast input's
// batches after a barrier pile up while the task waits for the slow one's;
// beyond alignment_buffer_batches the task declines rather than stall.
TEST(CheckpointTest, AlignmentThatWouldHoldBackTooMuchDeclinesTheCheckpointNotTheJob) {
  testing::TempDir dir;
  ExecutionConfig config = checkpointed(dir, 5ms);
  config.batch_size = 4;
  config.alignment_buffer_batches = 2;
  LocalEnvironment env("overflow", config);
  auto collected = std::make_shared<testing::Collected<long long>>();
  auto fast = env.from_source<PacedSource>(Options{.name = "fast"}, 20'000LL, 0us);
  auto slow = env.from_source<PacedSource>(Options{.name = "slow"}, 20'000LL, 20ms);
  fast.union_with(slow).sink<testing::CollectSink<long long>>(Options{}, collected);
  const JobResult result = env.execute();
  EXPECT_EQ(result.state, JobState::kFinished);
  EXPECT_EQ(collected->sorted().size(), 40'000u) << "a declined checkpoint lost records";
  EXPECT_GT(result.checkpoints_failed, 0u) << "the alignment never overflowed: the test is void";
}

}  // namespace
}  // namespace sage

namespace sage {
namespace {

TEST(CheckpointTest, WriteTextCommitsEveryLineOnceWhenTheFinalCheckpointCompletes) {
  testing::TempDir checkpoints, output;
  LocalEnvironment env("write-text", checkpointed(checkpoints, 5ms));
  env.from_source<PacedSource>(Options{.name = "paced", .parallelism = 2}, 20'000LL, 10ms)
      .key_by([](long long x) { return x % 7; })
      .map([](long long x) { return x * 3; })
      .write_text(output.path(), {.parallelism = 3});
  const JobResult result = env.execute();
  EXPECT_GE(result.checkpoints_completed, 2u) << "checkpoints while it ran, then the final one";
  int hidden = 0;
  const auto lines = testing::committed_lines(output.path(), &hidden);
  EXPECT_EQ(hidden, 0) << "in-progress files left after the job finished";
  std::vector<std::string> expected;
  for (long long x = 0; x < 20'000; ++x) expected.push_back(std::to_string(3 * x));
  std::sort(expected.begin(), expected.end());
  EXPECT_TRUE(lines == expected) << lines.size() << " lines";
}

}  // namespace
}  // namespace sage

namespace sage {
namespace {

TEST(CheckpointTest, AtLeastOnceCheckpointsWithoutHoldingChannelsBack) {
  testing::TempDir dir;
  ExecutionConfig config = checkpointed(dir, 5ms);
  config.checkpoint_mode = CheckpointMode::kAtLeastOnce;
  config.alignment_buffer_batches = 1;  // would overflow at once if anything were held back
  JobResult plain, with;
  const auto expected = run_doubling(ExecutionConfig{.batch_size = 64}, &plain);
  const auto actual = run_doubling(config, &with);
  EXPECT_TRUE(actual == expected);
  EXPECT_GE(with.checkpoints_completed, 2u);
  EXPECT_EQ(with.checkpoints_failed, 0u) << "at-least-once held a channel back";
}

}  // namespace
}  // namespace sage

namespace sage {
namespace {

TEST(CheckpointTest, AnEnvironmentLeftWithItsCheckpointedJobRunningStopsItAndCommits) {
  testing::TempDir checkpoints, output;
  {
    LocalEnvironment env("left-running", checkpointed(checkpoints, 5ms));
    env.from_source<PacedSource>(Options{.name = "paced"}, 1'000'000'000LL, 1ms)
        .write_text(output.path());
    env.submit();
  }  // the destructor stops the job; it must not wait forever for a final checkpoint
  int hidden = 0;
  testing::committed_lines(output.path(), &hidden);
  EXPECT_EQ(hidden, 0) << "the stopped job's last file was not committed";
}

}  // namespace
}  // namespace sage

namespace sage {
namespace {

// Storage that refuses every write (here a file where the directory should
// be; a full disk looks the same): checkpoints are declined with the reason,
// and the job fails rather than report FINISHED with output it could not
// commit.
TEST(CheckpointTest, CheckpointsThatCannotBeStoredFailTheJobAtItsFinalCheckpointSayingWhy) {
  testing::TempDir dir;
  const std::string not_a_directory = dir.file("file");
  std::ofstream(not_a_directory) << "x";
  ExecutionConfig config = checkpointed(dir, 5ms);
  config.checkpoint_directory = not_a_directory;
  LocalEnvironment env("unstorable", config);
  env.from_source<PacedSource>(Options{.name = "paced"}, 5'000LL, 1ms).sink([](long long) {});
  try {
    env.execute();
    FAIL() << "a job whose checkpoints could not be stored finished";
  } catch (const JobFailedError& e) {
    const std::string error = e.what();
    EXPECT_NE(error.find("the final checkpoint"), std::string::npos) << error;
    EXPECT_NE(error.find("could not be stored"), std::string::npos) << error;
    EXPECT_NE(error.find(not_a_directory), std::string::npos) << error;
    EXPECT_GT(e.result().checkpoints_failed, 0u);
  }
}

}  // namespace
}  // namespace sage
