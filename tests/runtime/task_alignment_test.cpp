// Barrier alignment in one task, driven message by message: the messages of
// its input channels are queued in a chosen order, so that each interleaving
// (an input that ends while the task aligns, a barrier that overtakes another)
// is tested every run rather than when the scheduler happens to produce it.
#include "runtime/task.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "sage/detail/instance_metrics.hpp"

namespace sage::runtime {
namespace {

using Kind = detail::Message::Kind;

// A sink of long long that records what it received, and at each snapshot
// how many records it had seen by then.
class RecordingSink final : public detail::Operator, public detail::BatchReceiver<long long> {
 public:
  void open() override {}
  void finish() override {}
  detail::BatchReceiverBase& input(int) override { return *this; }
  void receive(std::vector<long long>& batch) override {
    received.insert(received.end(), batch.begin(), batch.end());
  }
  void snapshot(detail::OperatorSnapshot& out, std::uint64_t id) override {
    seen_at_snapshot[id] = received.size();
    out.function_state = std::to_string(received.size());
  }
  void restore(const detail::OperatorSnapshot&) override {}
  void notify_checkpoint_complete(std::uint64_t) override {}

  std::vector<long long> received;
  std::map<std::uint64_t, std::size_t> seen_at_snapshot;
};

// Stands in for the process's checkpointing: records what the task stores
// and declines, and once the task has ended posts the final checkpoint and
// its completion, as the coordinator does.
class RecordingCheckpointing final : public TaskCheckpointing {
 public:
  explicit RecordingCheckpointing(InputQueue& queue) : queue_(queue) {}
  CheckpointMode mode() const override { return CheckpointMode::kExactlyOnce; }
  std::size_t alignment_buffer_batches() const override { return 64; }
  void store(std::uint64_t id, const checkpoint::TaskKey&, const std::string&, std::string,
             std::int64_t) override {
    stored.push_back(id);
  }
  void decline(std::uint64_t id, const checkpoint::TaskKey&, const std::string& reason) override {
    declined[id] = reason;
  }
  void finished(const checkpoint::TaskKey&) override {
    queue_.post(detail::Message::command(Kind::kFinalCheckpoint, 100));
    queue_.post(detail::Message::command(Kind::kCheckpointComplete, 100));
  }
  std::optional<std::string> restore_bytes(const checkpoint::TaskKey&) override {
    return std::nullopt;
  }

  std::vector<std::uint64_t> stored;
  std::map<std::uint64_t, std::string> declined;

 private:
  InputQueue& queue_;
};

detail::Message batch(std::uint32_t channel, std::vector<long long> records) {
  return detail::Message::of_batch(channel,
                                   std::make_unique<detail::Batch<long long>>(std::move(records)));
}

// One task with a recording sink behind `channels` input channels.
class TaskAlignmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    task_.name = "sink[1/1]";
    auto sink = std::make_unique<RecordingSink>();
    sink_ = sink.get();
    task_.operators.push_back(std::move(sink));
    task_.queue = &queue_;
    task_.checkpointing = &checkpointing_;
  }
  void run(std::uint32_t channels, std::vector<detail::Message> messages) {
    for (std::uint32_t c = 0; c < channels; ++c) task_.channels.push_back({&adapter_, sink_});
    for (auto& message : messages) queue_.push(std::move(message));
    JobControl control;
    task_.run(control, ExecutionConfig{});
  }
  std::vector<long long> received() const {
    auto records = sink_->received;
    std::sort(records.begin(), records.end());
    return records;
  }

  detail::InstanceMetrics metrics_;
  InputQueue queue_{1024, metrics_};
  RecordingCheckpointing checkpointing_{queue_};
  detail::TypedInputAdapter<long long> adapter_;
  RecordingSink* sink_ = nullptr;
  Task task_;
};

// The input that delivered the barrier ends while another has yet to: its
// held batches come after the snapshot, and are still delivered when the
// last input ends (they were lost when the task stopped at the last end).
TEST_F(TaskAlignmentTest, BatchesHeldForAnInputThatEndedAreDeliveredAfterTheSnapshot) {
  run(2, [] {
    std::vector<detail::Message> m;
    m.push_back(batch(1, {10}));
    m.push_back(detail::Message::barrier(0, 1));
    m.push_back(batch(0, {1, 2, 3}));
    m.push_back(detail::Message::end_of_stream(0));
    m.push_back(batch(1, {11}));
    m.push_back(detail::Message::end_of_stream(1));
    return m;
  }());
  EXPECT_EQ(received(), (std::vector<long long>{1, 2, 3, 10, 11}));
  ASSERT_EQ(checkpointing_.stored, (std::vector<std::uint64_t>{1, 100}));
  EXPECT_EQ(sink_->seen_at_snapshot[1], 2u) << "the snapshot saw a record from after its barrier";
  EXPECT_TRUE(checkpointing_.declined.empty());
}

// The same, when every input ends before the barrier reaches the others.
TEST_F(TaskAlignmentTest, BatchesHeldWhenEveryOtherInputEndsWithoutItsBarrierAreDelivered) {
  run(3, [] {
    std::vector<detail::Message> m;
    m.push_back(detail::Message::barrier(2, 1));
    m.push_back(batch(2, {7, 8}));
    m.push_back(detail::Message::end_of_stream(2));
    m.push_back(batch(0, {1}));
    m.push_back(detail::Message::end_of_stream(0));
    m.push_back(detail::Message::end_of_stream(1));
    return m;
  }());
  EXPECT_EQ(received(), (std::vector<long long>{1, 7, 8}));
  ASSERT_EQ(checkpointing_.stored, (std::vector<std::uint64_t>{1, 100}));
  EXPECT_EQ(sink_->seen_at_snapshot[1], 1u);
}

// A newer barrier overtakes an alignment in progress: the older checkpoint
// is declined, its held batches delivered, and the newer one aligns.
TEST_F(TaskAlignmentTest, ANewerBarrierDeclinesTheOlderAlignmentAndLosesNothing) {
  run(2, [] {
    std::vector<detail::Message> m;
    m.push_back(detail::Message::barrier(0, 1));
    m.push_back(batch(0, {1}));
    m.push_back(detail::Message::barrier(0, 2));
    m.push_back(batch(0, {2}));
    m.push_back(detail::Message::barrier(1, 2));
    m.push_back(detail::Message::end_of_stream(0));
    m.push_back(detail::Message::end_of_stream(1));
    return m;
  }());
  EXPECT_EQ(received(), (std::vector<long long>{1, 2}));
  EXPECT_EQ(checkpointing_.declined.count(1), 1u);
  ASSERT_EQ(checkpointing_.stored, (std::vector<std::uint64_t>{2, 100}));
  EXPECT_EQ(sink_->seen_at_snapshot[2], 1u)
      << "a record from before barrier 2 was held out of checkpoint 2";
}

}  // namespace
}  // namespace sage::runtime
