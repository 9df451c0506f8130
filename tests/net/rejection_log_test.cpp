// A flood of rejected connections makes a few log lines: per interval the
// first ones in full, then one line counting the rest once it is over.
#include "net/rejection_log.hpp"

#include <gtest/gtest.h>

namespace sage::net {
namespace {

using Clock = RejectionLog::Clock;

TEST(RejectionLogTest, LogsTheFirstRejectionsOfAnIntervalInFullAndCountsTheRest) {
  RejectionLog log("data plane of job j");
  const Clock::time_point start{};
  for (std::size_t i = 0; i < kRejectionsLoggedInFull; ++i) {
    const auto lines = log.add("10.0.0.9:4000", "garbage", start);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0], "data plane of job j: rejected a connection from 10.0.0.9:4000: garbage");
  }
  EXPECT_FALSE(log.summary_due());
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(log.add("10.0.0.9:4000", "garbage", start).empty());
  ASSERT_TRUE(log.summary_due());
  EXPECT_EQ(*log.summary_due(), start + kRejectionLogInterval);
  EXPECT_FALSE(log.summary(start + kRejectionLogInterval - std::chrono::milliseconds(1)));
  const auto counted = log.summary(start + kRejectionLogInterval);
  ASSERT_TRUE(counted);
  EXPECT_EQ(counted->find("data plane of job j: rejected 100 more connections within 10 s"), 0u)
      << *counted;
  EXPECT_FALSE(log.summary_due());
  EXPECT_FALSE(log.summary(Clock::time_point::max()));
}

TEST(RejectionLogTest, ARejectionAfterTheIntervalBringsItsCountThenStartsAFreshOne) {
  RejectionLog log("x");
  const Clock::time_point start{};
  for (std::size_t i = 0; i <= kRejectionsLoggedInFull; ++i) log.add("a", "r", start);
  const auto later = start + kRejectionLogInterval + std::chrono::seconds(1);
  const auto lines = log.add("b", "r", later);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].find("x: rejected 1 more connections"), 0u) << lines[0];
  EXPECT_EQ(lines[1], "x: rejected a connection from b: r");
}

TEST(RejectionLogTest, HeldBackRejectionsAreCountedAtTheEndWhateverTheTime) {
  RejectionLog log("x");
  const Clock::time_point start{};
  for (std::size_t i = 0; i < kRejectionsLoggedInFull + 3; ++i) log.add("a", "r", start);
  const auto counted = log.summary(Clock::time_point::max());
  ASSERT_TRUE(counted);
  EXPECT_EQ(counted->find("x: rejected 3 more connections"), 0u) << *counted;
}

}  // namespace
}  // namespace sage::net
