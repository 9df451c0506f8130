// The checkpoint coordinator's decisions, step by step on a fake clock, with
// its storage in a real directory.
#include "checkpoint/coordinator.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"

namespace sage::checkpoint {
namespace {

using namespace std::chrono_literals;

class Recorder final : public CoordinatorActions {
 public:
  void trigger(std::uint64_t id) override { events.push_back("trigger " + std::to_string(id)); }
  void trigger_final(std::uint64_t id) override { events.push_back("final " + std::to_string(id)); }
  void complete(std::uint64_t id) override { events.push_back("complete " + std::to_string(id)); }
  void abort(std::uint64_t id) override { events.push_back("abort " + std::to_string(id)); }
  void fail(const std::string& why) override { events.push_back("fail " + why); }
  std::vector<std::string> events;
};

const std::vector<TaskKey> kTasks = {{0, 0}, {0, 1}, {1, 0}};

class CoordinatorTest : public ::testing::Test {
 protected:
  CheckpointCoordinator make(CoordinatorSettings settings, std::uint64_t next_id = 1) {
    return CheckpointCoordinator(settings, "job-1", "fp", kTasks, storage, actions, next_id, t0);
  }
  void ack_all(CheckpointCoordinator& c, std::uint64_t id, Clock::time_point now) {
    for (const auto& task : kTasks) c.acknowledge(id, task, 10, 5, now);
  }
  testing::TempDir dir;
  DirectoryStorage storage{dir.file("job-1")};
  Recorder actions;
  Clock::time_point t0 = Clock::now();
};

TEST_F(CoordinatorTest, TriggersEveryIntervalAndCompletesWhenEveryTaskStoredItsSnapshot) {
  auto c = make({.interval = 100ms});
  c.poll(t0 + 50ms);
  EXPECT_TRUE(actions.events.empty()) << "triggered before the interval";
  c.poll(t0 + 100ms);
  ASSERT_EQ(actions.events, std::vector<std::string>{"trigger 1"});
  for (const auto& task : kTasks) storage.write_task_snapshot(1, task, "x");
  c.acknowledge(1, kTasks[0], 10, 5, t0 + 110ms);
  c.acknowledge(1, kTasks[0], 10, 5, t0 + 110ms);  // twice: counted once
  c.acknowledge(1, kTasks[1], 10, 7, t0 + 110ms);
  EXPECT_FALSE(storage.latest_complete()) << "complete before every task acknowledged";
  c.acknowledge(1, kTasks[2], 10, 3, t0 + 120ms);
  EXPECT_EQ(actions.events.back(), "complete 1");
  const auto latest = storage.latest_complete();
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->id, 1u);
  EXPECT_EQ(latest->bytes, 30u);
  EXPECT_EQ(latest->alignment_ns, 7);
  EXPECT_EQ(latest->tasks, kTasks);
  EXPECT_EQ(c.stats().completed, 1u);
  // The next one waits an interval from the end of this one.
  c.poll(t0 + 200ms);
  EXPECT_EQ(actions.events.back(), "complete 1");
  c.poll(t0 + 220ms);
  EXPECT_EQ(actions.events.back(), "trigger 2");
}

TEST_F(CoordinatorTest, OneCheckpointInFlightAndMinimumPauseBetween) {
  auto c = make({.interval = 10ms, .min_pause = 500ms});
  c.poll(t0 + 500ms);
  ASSERT_EQ(actions.events.back(), "trigger 1");
  c.poll(t0 + 900ms);  // still in flight: nothing new
  EXPECT_EQ(actions.events.size(), 1u);
  ack_all(c, 1, t0 + 1s);
  c.poll(t0 + 1s + 499ms);
  EXPECT_EQ(actions.events.back(), "complete 1");
  c.poll(t0 + 1s + 500ms);
  EXPECT_EQ(actions.events.back(), "trigger 2");
}

TEST_F(CoordinatorTest, ADeclinedOrLateCheckpointIsAbortedAndStaleAcknowledgementsIgnored) {
  auto c = make({.interval = 10ms, .timeout = 1s});
  c.poll(t0 + 10ms);
  c.decline(1, kTasks[1], "alignment overflow", t0 + 20ms);
  EXPECT_EQ(actions.events.back(), "abort 1");
  EXPECT_EQ(c.stats().failed, 1u);
  EXPECT_NE(c.stats().last_failure.find("alignment overflow"), std::string::npos);
  ack_all(c, 1, t0 + 25ms);  // late: checkpoint 1 is gone
  EXPECT_FALSE(storage.latest_complete());
  c.poll(t0 + 30ms);
  ASSERT_EQ(actions.events.back(), "trigger 2");
  c.poll(t0 + 30ms + 999ms);
  EXPECT_EQ(actions.events.back(), "trigger 2");
  c.poll(t0 + 30ms + 1s);
  EXPECT_EQ(actions.events.back(), "abort 2") << "past its timeout";
  EXPECT_NE(c.stats().last_failure.find("checkpoint_timeout"), std::string::npos);
}

TEST_F(CoordinatorTest, FailsTheJobWhenMoreFailuresInARowThanTolerated) {
  auto c = make({.interval = 10ms, .tolerable_failures = 1});
  c.poll(t0 + 10ms);
  c.decline(1, kTasks[0], "no", t0 + 10ms);
  c.poll(t0 + 20ms);
  ack_all(c, 2, t0 + 20ms);  // a success resets the count
  c.poll(t0 + 30ms);
  c.decline(3, kTasks[0], "no", t0 + 30ms);
  EXPECT_FALSE(actions.events.back().starts_with("fail"));
  c.poll(t0 + 40ms);
  c.decline(4, kTasks[0], "no", t0 + 40ms);
  ASSERT_TRUE(actions.events.back().starts_with("fail")) << actions.events.back();
  EXPECT_NE(actions.events.back().find("tolerable_checkpoint_failures (1)"), std::string::npos);
}

TEST_F(CoordinatorTest, TheFinalCheckpointStartsOnceEveryTaskEndedAndAbortsARegularOne) {
  auto c = make({.interval = 10ms});
  c.poll(t0 + 10ms);
  c.task_finished(kTasks[0], t0 + 11ms);
  EXPECT_EQ(actions.events.back(), "abort 1") << "an ended task passes no more barriers";
  c.poll(t0 + 100ms);
  EXPECT_EQ(actions.events.back(), "abort 1") << "no regular checkpoint after a task ended";
  c.task_finished(kTasks[1], t0 + 100ms);
  c.task_finished(kTasks[2], t0 + 100ms);
  ASSERT_EQ(actions.events.back(), "final 2");
  EXPECT_FALSE(c.final_complete());
  ack_all(c, 2, t0 + 110ms);
  EXPECT_EQ(actions.events.back(), "complete 2");
  EXPECT_TRUE(c.final_complete());
  EXPECT_TRUE(storage.latest_complete()->final);
}

TEST_F(CoordinatorTest, IdsContinueAfterTheCheckpointAJobRestartedFrom) {
  auto c = make({.interval = 10ms}, 8);
  c.poll(t0 + 10ms);
  EXPECT_EQ(actions.events.back(), "trigger 8");
}

TEST_F(CoordinatorTest, KeepsTheNewestRetainedCheckpointsOnly) {
  auto c = make({.interval = 10ms, .retained = 2});
  auto now = t0;
  for (std::uint64_t id = 1; id <= 4; ++id) {
    now += 10ms;
    c.poll(now);
    for (const auto& task : kTasks) storage.write_task_snapshot(id, task, "x");
    ack_all(c, id, now);
  }
  std::vector<std::string> left;
  for (const auto& entry : std::filesystem::directory_iterator(storage.root())) {
    left.push_back(entry.path().filename().string());
  }
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"chk-3", "chk-4"}));
}

TEST(CheckpointStorageTest, AJobIdThatIsNotSagesNeverBecomesAPath) {
  EXPECT_EQ(job_checkpoint_root("/base", "job-00ab12"), "/base/job-00ab12");
  for (const std::string bad : {"../etc", "job-../x", "job-/", "", "job-AB", "x"}) {
    EXPECT_THROW(job_checkpoint_root("/base", bad), Error) << bad;
  }
}

TEST(CheckpointStorageTest, OnlyACheckpointWithReadableMetadataIsComplete) {
  testing::TempDir dir;
  DirectoryStorage storage(dir.file("job-1"));
  storage.write_task_snapshot(1, {0, 0}, "one");
  EXPECT_EQ(storage.read_task_snapshot(1, {0, 0}), "one");
  EXPECT_THROW(storage.read_task_snapshot(1, {0, 1}), Error);
  EXPECT_FALSE(storage.latest_complete());
  storage.write_metadata(CheckpointMetadata{.id = 1, .job_id = "job-1"});
  storage.write_task_snapshot(2, {0, 0}, "two");  // no metadata: incomplete
  ASSERT_TRUE(storage.latest_complete());
  EXPECT_EQ(storage.latest_complete()->id, 1u);
  // Garbage where metadata should be is skipped, not trusted.
  std::filesystem::create_directories(dir.file("job-1/chk-3"));
  write_file_durably(dir.file("job-1/chk-3/_metadata"), "garbage");
  EXPECT_EQ(storage.latest_complete()->id, 1u);
  // No temporary file is left behind by a durable write.
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir.path())) {
    EXPECT_FALSE(entry.path().filename().string().ends_with(".tmp")) << entry.path();
  }
}

}  // namespace
}  // namespace sage::checkpoint
