// The error of a job's share in one process: a cause (an operator's
// exception) wins over a consequence (a connection to another process that
// failed), whichever came first.
#include "runtime/process_job.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "integration/sample_job.hpp"
#include "sage/error.hpp"

namespace sage::runtime {
namespace {

using namespace std::chrono_literals;

TEST(JobControlTest, ACauseReplacesAConsequenceAndNothingReplacesACause) {
  JobControl consequence_first;
  consequence_first.fail("the connection broke", FailureKind::kConsequence);
  consequence_first.fail("the other connection broke", FailureKind::kConsequence);
  EXPECT_EQ(consequence_first.error(), "the connection broke");
  EXPECT_EQ(consequence_first.error_kind(), FailureKind::kConsequence);
  consequence_first.fail("boom");
  consequence_first.fail("the last connection broke", FailureKind::kConsequence);
  consequence_first.fail("a second boom");
  EXPECT_EQ(consequence_first.error(), "boom");
  EXPECT_EQ(consequence_first.error_kind(), FailureKind::kCause);
  EXPECT_TRUE(consequence_first.cancelled());
}

// Records for a task of another process, whose connection is gone. With
// `wait_for`, it fails only once that is set (or after 10 s).
class BrokenConnection final : public detail::MessageSink {
 public:
  explicit BrokenConnection(const std::atomic<bool>* wait_for = nullptr) : wait_for_(wait_for) {}
  void push(detail::Message) override {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (wait_for_ != nullptr && !*wait_for_ && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    used = true;
    throw detail::PeerLostError("the connection to that process broke");
  }
  std::atomic<bool> used{false};

 private:
  const std::atomic<bool>* wait_for_;
};

// One source, rebalanced to two maps; map instance 1 runs in "another
// process", reached through `remote`.
Placement with_instance_1_remote(detail::MessageSink& remote) {
  Placement placement;
  placement.node_id = "n1";
  placement.is_local = [](int chain, int instance) { return chain == 0 || instance == 0; };
  placement.remote_sink = [&remote](int, int) -> detail::MessageSink& { return remote; };
  return placement;
}

// numbers -> rebalance -> relay (2) -> discard (2).
void build_relay(testing::BuildOnlyEnvironment& env) {
  env.from_sequence(0, 1'000'000, {.name = "numbers"})
      .rebalance()
      .map([](long long x) { return x; }, {.name = "relay", .parallelism = 2})
      .sink([](long long) {}, {.name = "discard", .parallelism = 2});
}

ExecutionConfig record_by_record() {
  ExecutionConfig config;
  config.batch_size = 1;  // the first record goes to instance 0, the second to instance 1
  return config;
}

TEST(ProcessJobTest, AFailedConnectionToAnotherProcessIsAConsequence) {
  testing::BuildOnlyEnvironment env;
  build_relay(env);
  BrokenConnection broken;
  ProcessJob job(env.graph(), record_by_record(), "job-1", with_instance_1_remote(broken));
  job.start();
  const JobResult& result = job.wait();
  EXPECT_EQ(result.state, JobState::kFailed);
  EXPECT_EQ(result.error, "task numbers[0/1] on node n1: the connection to that process broke");
  EXPECT_EQ(job.failure_kind(), FailureKind::kConsequence);
}

TEST(ProcessJobTest, AnOperatorsExceptionAfterAFailedConnectionIsTheError) {
  testing::BuildOnlyEnvironment env;
  std::atomic<bool> mapping{false};
  BrokenConnection broken(&mapping);
  env.from_sequence(0, 1'000'000, {.name = "numbers"})
      .rebalance()
      .map(
          [&](long long x) {
            // Throws once the connection failure was recorded (or after 10 s).
            mapping = true;
            const auto deadline = std::chrono::steady_clock::now() + 10s;
            while (!broken.used && std::chrono::steady_clock::now() < deadline) {
              std::this_thread::sleep_for(1ms);
            }
            throw std::runtime_error("boom on " + std::to_string(x));
            return x;
          },
          {.name = "relay", .parallelism = 2})
      .sink([](long long) {}, {.name = "discard", .parallelism = 2});
  ProcessJob job(env.graph(), record_by_record(), "job-1", with_instance_1_remote(broken));
  job.start();
  const JobResult& result = job.wait();
  ASSERT_TRUE(broken.used) << "the source never sent to the broken connection";
  EXPECT_EQ(result.state, JobState::kFailed);
  EXPECT_EQ(result.error, "operator 'relay' instance 0/2 on node n1: boom on 0");
  EXPECT_EQ(job.failure_kind(), FailureKind::kCause);
}

// A push that fails for a reason of its own (a batch over the frame limit),
// not because the other process is gone.
class OversizedBatch final : public detail::MessageSink {
 public:
  void push(detail::Message) override {
    throw Error("a batch of 1 records encodes to 70000000 bytes, over the frame limit");
  }
};

TEST(ProcessJobTest, AFailedSendOfItsOwnToAnotherProcessIsACause) {
  testing::BuildOnlyEnvironment env;
  build_relay(env);
  OversizedBatch oversized;
  ProcessJob job(env.graph(), record_by_record(), "job-1", with_instance_1_remote(oversized));
  job.start();
  const JobResult& result = job.wait();
  EXPECT_EQ(result.state, JobState::kFailed);
  EXPECT_NE(result.error.find("over the frame limit"), std::string::npos) << result.error;
  EXPECT_EQ(job.failure_kind(), FailureKind::kCause);
}

}  // namespace
}  // namespace sage::runtime

namespace sage::runtime {
namespace {

// Barriers come only from a job's own checkpoints: one that arrives at a job
// without them (a peer running another build of the program) fails the job
// with a cause that says so.
TEST(ProcessJobTest, ABarrierInAJobWithoutCheckpointsFailsItSayingSo) {
  testing::BuildOnlyEnvironment env;
  build_relay(env);
  ProcessJob job(env.graph(), ExecutionConfig{}, "job-1");
  job.queue(1, 0)->push(detail::Message::barrier(0, 7));
  job.start();
  const JobResult& result = job.wait();
  EXPECT_EQ(result.state, JobState::kFailed);
  EXPECT_NE(result.error.find("a checkpoint barrier arrived on input channel 0, but this job "
                              "has no checkpoints"),
            std::string::npos)
      << result.error;
  EXPECT_EQ(job.failure_kind(), FailureKind::kCause);
}

}  // namespace
}  // namespace sage::runtime
