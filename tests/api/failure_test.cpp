// Errors reach the user with the operator, the instance and the message, and
// invalid dataflows are rejected before anything runs.
#include <gtest/gtest.h>

#include <atomic>
#include <string>

#include "support/collect.hpp"

namespace sage {
namespace {

std::string failure_of(Environment& env) {
  try {
    env.execute();
  } catch (const JobFailedError& e) {
    EXPECT_EQ(e.result().state, JobState::kFailed);
    return e.what();
  }
  ADD_FAILURE() << "the job did not fail";
  return "";
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

TEST(FailureTest, OperatorExceptionFailsJobWithOperatorInstanceAndMessage) {
  LocalEnvironment env("throwing");
  env.from_sequence(0, 1'000'000LL, Options{.parallelism = 2})
      .map(
          [](long long x) {
            if (x == 777) throw std::runtime_error("bad record 777");
            return x;
          },
          {.name = "Exploder", .parallelism = 3})
      .sink([](long long) {}, {.parallelism = 2});
  const std::string error = failure_of(env);
  expect_contains(error, "operator 'Exploder' instance");
  expect_contains(error, "/3");
  expect_contains(error, "bad record 777");
}

TEST(FailureTest, ExceptionInOpenAndInSourceAreReported) {
  struct BadOpen : Function {
    void open(RuntimeContext&) override { throw std::runtime_error("cannot connect to db"); }
    void sink(int) {}
  };
  LocalEnvironment env("bad-open");
  env.from_collection({1, 2, 3}).sink<BadOpen>(Options{.name = "DbSink"});
  const std::string error = failure_of(env);
  expect_contains(error, "DbSink");
  expect_contains(error, "cannot connect to db");

  LocalEnvironment env2("bad-source");
  env2.from_source([]() -> std::optional<int> { throw std::runtime_error("source broke"); },
                   {.name = "Broken"})
      .print();
  const std::string error2 = failure_of(env2);
  expect_contains(error2, "Broken");
  expect_contains(error2, "source broke");
}

TEST(FailureTest, PartitionerIndexOutOfRangeFailsJob) {
  LocalEnvironment env("bad-partitioner");
  env.from_collection({1, 2, 3}, {.name = "numbers"})
      .partition_custom([](const int& x, int n) { return x == 3 ? n : 0; }, 2)
      .sink([](int) {});
  const std::string error = failure_of(env);
  expect_contains(error, "numbers");
  expect_contains(error, "partitioner returned index 2 for 2 partitions");
}

TEST(FailureTest, InvalidParallelismRejectedWhenBuilt) {
  LocalEnvironment env("bad-parallelism");
  auto s = env.from_collection({1, 2, 3});
  try {
    s.map([](int x) { return x; }, {.name = "Zero", .parallelism = 0});
    FAIL() << "parallelism 0 was accepted";
  } catch (const InvalidPlanError& e) {
    expect_contains(e.what(), "'Zero': parallelism must be at least 1, got 0");
  }
}

TEST(FailureTest, ForwardBetweenDifferentParallelismRejected) {
  LocalEnvironment env("bad-forward");
  env.from_collection({1, 2, 3}).forward().sink([](int) {}, {.name = "Wide", .parallelism = 2});
  try {
    env.execute();
    FAIL() << "forward 1 -> 2 was accepted";
  } catch (const InvalidPlanError& e) {
    expect_contains(e.what(), "forward needs equal parallelism");
  }
}

TEST(FailureTest, StreamUsedAfterEnvironmentRan) {
  LocalEnvironment env("used-after");
  auto s = env.from_collection({1, 2, 3});
  s.sink([](int) {});
  env.execute();
  EXPECT_THROW(s.map([](int x) { return x; }), InvalidPlanError);
  EXPECT_THROW(env.submit(), InvalidPlanError);
}

TEST(FailureTest, BadResourcesRejected) {
  LocalEnvironment env("bad-resources");
  auto s = env.from_collection({1});
  EXPECT_THROW(s.map([](int x) { return x; }, {.resources = Resources{.memory = "lots"}}),
               InvalidPlanError);
  EXPECT_THROW(s.map([](int x) { return x; }, {.resources = Resources{.num_cpus = -1}}),
               InvalidPlanError);
  EXPECT_EQ((Resources{.memory = "8GB"}.memory_bytes()), 8ULL << 30);
  EXPECT_EQ((Resources{.memory = "512 mb"}.memory_bytes()), 512ULL << 20);
}

TEST(FailureTest, CombiningStreamsOfTwoEnvironmentsRejected) {
  LocalEnvironment a("a"), b("b");
  auto x = a.from_collection({1});
  auto y = b.from_collection({2});
  EXPECT_THROW(x.union_with(y), InvalidPlanError);
}

}  // namespace
}  // namespace sage
