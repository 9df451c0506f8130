#include "runtime/input_queue.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace sage::runtime {
namespace {

using Clock = std::chrono::steady_clock;

// Whether `flag` becomes true before `timeout` passes.
bool eventually(const std::atomic<bool>& flag, Clock::duration timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!flag.load()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

detail::Message batch_of(int n, std::uint32_t channel = 0) {
  return detail::Message::of_batch(channel,
                                   std::make_unique<detail::Batch<int>>(std::vector<int>(n, 7)));
}

TEST(InputQueueTest, ProducerBlocksWhileFullAndResumesWhenConsumerTakes) {
  detail::InstanceMetrics metrics;
  InputQueue queue(2, metrics);
  queue.push(batch_of(1));
  queue.push(batch_of(2));
  std::atomic<bool> third_pushed{false};
  std::thread producer([&] {
    queue.push(batch_of(3));
    third_pushed = true;
  });
  // The queue is full: the push must still be blocked a while later.
  EXPECT_FALSE(eventually(third_pushed, std::chrono::milliseconds(50)));
  detail::Message m;
  queue.pop(m);
  EXPECT_EQ(m.batch->size(), 1u);
  EXPECT_TRUE(eventually(third_pushed, std::chrono::seconds(10)))
      << "the producer stayed blocked after a batch was taken";
  producer.join();
  queue.pop(m);
  EXPECT_EQ(m.batch->size(), 2u);
  queue.pop(m);
  EXPECT_EQ(m.batch->size(), 3u);
  EXPECT_EQ(metrics.queue_peak_batches.load(), 2u);
  EXPECT_EQ(metrics.queue_capacity_batches.load(), 2u);
}

TEST(InputQueueTest, BlockedProducerResumesOnceTheQueueIsHalfEmpty) {
  detail::InstanceMetrics metrics;
  InputQueue queue(4, metrics);
  for (int i = 1; i <= 4; ++i) queue.push(batch_of(i));
  std::atomic<bool> fifth_pushed{false};
  std::thread producer([&] {
    queue.push(batch_of(5));
    fifth_pushed = true;
  });
  EXPECT_FALSE(eventually(fifth_pushed, std::chrono::milliseconds(50)));
  detail::Message m;
  queue.pop(m);
  EXPECT_FALSE(eventually(fifth_pushed, std::chrono::milliseconds(50)))
      << "the producer resumed with the queue three quarters full";
  queue.pop(m);
  EXPECT_TRUE(eventually(fifth_pushed, std::chrono::seconds(10)))
      << "the producer stayed blocked with the queue half empty";
  producer.join();
  for (int i = 3; i <= 5; ++i) {
    queue.pop(m);
    EXPECT_EQ(m.batch->size(), static_cast<std::size_t>(i));
  }
}

TEST(InputQueueTest, PopTimesOutWhenEmpty) {
  detail::InstanceMetrics metrics;
  InputQueue queue(4, metrics);
  detail::Message m;
  EXPECT_FALSE(queue.pop_until(m, Clock::now() + std::chrono::milliseconds(5)));
  queue.push(detail::Message::end_of_stream(3));
  EXPECT_TRUE(queue.pop_until(m, Clock::now() + std::chrono::seconds(5)));
  EXPECT_EQ(m.channel, 3u);
  EXPECT_EQ(m.batch, nullptr);
}

// An asynchronous operator's completion ends the task's wait for input (with
// no deadline) and its wait for room, and a wake that came first still counts.
TEST(InputQueueTest, WakeEndsAWaitForInputOrForRoomAndIsNotLostWhenEarly) {
  detail::InstanceMetrics metrics;
  InputQueue queue(4, metrics);
  detail::Message m;
  std::atomic<bool> returned{false};
  std::thread consumer([&] {
    EXPECT_FALSE(queue.pop_until(m, Clock::time_point::max()));
    returned = true;
  });
  EXPECT_FALSE(eventually(returned, std::chrono::milliseconds(20))) << "returned unwoken";
  queue.wake();
  EXPECT_TRUE(eventually(returned, std::chrono::seconds(10))) << "the wake was lost";
  consumer.join();

  queue.wake();  // before the wait: the wait ends at once
  const auto start = Clock::now();
  queue.wait_for_wake(Clock::now() + std::chrono::seconds(10));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  // Consumed: the next wait lasts until its deadline.
  const auto second = Clock::now();
  queue.wait_for_wake(second + std::chrono::milliseconds(5));
  EXPECT_GE(Clock::now() - second, std::chrono::milliseconds(5));

  // A message that is there is taken, woken or not; pop() ignores wakes.
  queue.push(batch_of(1));
  queue.wake();
  EXPECT_TRUE(queue.pop_until(m, Clock::time_point::max()));
  queue.wake();
  queue.push(batch_of(2));
  queue.pop(m);
  EXPECT_EQ(m.batch->size(), 2u);
}

TEST(InputQueueTest, AbortWakesBlockedProducerAndConsumer) {
  detail::InstanceMetrics metrics;
  InputQueue full(1, metrics);
  full.push(batch_of(1));
  InputQueue empty(1, metrics);
  std::atomic<int> woken{0};
  std::thread producer([&] {
    EXPECT_THROW(full.push(batch_of(2)), detail::JobCancelledError);
    ++woken;
  });
  std::thread consumer([&] {
    detail::Message m;
    EXPECT_THROW(empty.pop(m), detail::JobCancelledError);
    ++woken;
  });
  full.abort();
  empty.abort();
  producer.join();
  consumer.join();
  EXPECT_EQ(woken.load(), 2);
}

}  // namespace
}  // namespace sage::runtime
