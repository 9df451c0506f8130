// Every way to start a stream, and print().
#include <gtest/gtest.h>

#include <deque>
#include <set>

#include "support/collect.hpp"

namespace sage {
namespace {

using testing::Collected;
using testing::CollectSink;

// A bounded source class with constructor arguments.
class Countdown : public Function {
 public:
  explicit Countdown(int from) : next_(from) {}
  std::optional<int> next() {
    if (next_ <= 0) return std::nullopt;
    return next_--;
  }

 private:
  int next_;
};

TEST(SourcesTest, CollectionsOfEveryKind) {
  auto ints = std::make_shared<Collected<int>>();
  auto strings = std::make_shared<Collected<std::string>>();
  LocalEnvironment env("collections");
  auto a = env.from_collection({1, 2});
  auto b = env.from_collection(std::deque<int>{3, 4});
  auto c = env.from_collection<Countdown>(2);
  auto d = env.from_batch(std::set<int>{5, 6}, {.parallelism = 2});
  auto e = env.from_batch([n = 7]() mutable -> std::optional<int> {
    if (n > 8) return std::nullopt;
    return n++;
  });
  a.union_with(b, c, d, e).sink<CollectSink<int>>(Options{.parallelism = 3}, ints);
  env.from_collection({"literal", "strings"}).sink<CollectSink<std::string>>(strings);
  env.execute();
  EXPECT_EQ(ints->sorted(), (std::vector<int>{1, 1, 2, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(strings->sorted(), (std::vector<std::string>{"literal", "strings"}));
}

TEST(SourcesTest, ParallelCollectionSplitsElementsOverInstances) {
  auto out = std::make_shared<Collected<int>>();
  LocalEnvironment env("split");
  std::vector<int> values(1000);
  for (int i = 0; i < 1000; ++i) values[i] = i;
  env.from_collection(values, {.name = "values", .parallelism = 4})
      .sink<CollectSink<int>>(Options{.parallelism = 4}, out);
  const JobResult result = env.execute();
  EXPECT_EQ(out->sorted(), values);
  for (const auto& s : result.instances) {
    if (s.operator_name == "values") {
      EXPECT_EQ(s.records_out, 250u);
    }
  }
}

TEST(SourcesTest, SequenceEmitsEachIntegerOfItsRangeOnceOverAllInstances) {
  auto out = std::make_shared<Collected<long long>>();
  LocalEnvironment env("sequence");
  env.from_sequence(5, 1005, {.parallelism = 3}).sink<CollectSink<long long>>(out);
  const JobResult result = env.execute();
  std::vector<long long> expected(1000);
  for (int i = 0; i < 1000; ++i) expected[i] = 5 + i;
  EXPECT_EQ(out->sorted(), expected);
  std::vector<std::uint64_t> per_instance;
  for (const auto& s : result.instances) {
    if (s.operator_name == "sequence") per_instance.push_back(s.records_out);
  }
  EXPECT_EQ(per_instance, (std::vector<std::uint64_t>{334, 333, 333}));
}

TEST(SourcesTest, SequenceGivesTheSameRecordsInBatchesOfAnySize) {
  for (std::size_t batch_size : {1, 7, 64, 4096}) {
    auto out = std::make_shared<Collected<long long>>();
    ExecutionConfig config;
    config.batch_size = batch_size;
    LocalEnvironment env("sequence", config);
    env.from_sequence(-3, 10'000, {.parallelism = 2}).sink<CollectSink<long long>>(out);
    env.execute();
    std::vector<long long> expected;
    for (long long x = -3; x < 10'000; ++x) expected.push_back(x);
    EXPECT_EQ(out->sorted(), expected) << "batch_size " << batch_size;
  }
}

// A source that hands over records in bulk: the engine calls next_batch, not
// next, and every record arrives once.
class BulkCountdown : public Function {
 public:
  explicit BulkCountdown(int from) : next_(from) {}
  std::optional<int> next() {
    ADD_FAILURE() << "next() called although the source has next_batch()";
    return std::nullopt;
  }
  bool next_batch(std::vector<int>& out, std::size_t max) {
    EXPECT_GT(max, 0u);
    for (std::size_t n = 0; n < max && next_ > 0; ++n) out.push_back(next_--);
    return next_ > 0;
  }

 private:
  int next_;
};

TEST(SourcesTest, ASourceWithNextBatchHandsOverRecordsInBulk) {
  auto out = std::make_shared<Collected<int>>();
  ExecutionConfig config;
  config.batch_size = 100;
  LocalEnvironment env("bulk", config);
  env.from_collection<BulkCountdown>(1'000).sink<CollectSink<int>>(out);
  env.execute();
  std::vector<int> expected;
  for (int x = 1; x <= 1'000; ++x) expected.push_back(x);
  EXPECT_EQ(out->sorted(), expected);
}

TEST(SourcesTest, PrintWritesOneLinePerRecordWithInstancePrefix) {
  LocalEnvironment env("print");
  env.from_collection(std::vector<std::pair<std::string, std::vector<int>>>{{"a", {1, 2}}})
      .print("got");
  ::testing::internal::CaptureStdout();
  env.execute();
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "got (a, [1, 2])\n");

  LocalEnvironment parallel("print-parallel");
  parallel.from_collection({std::optional<int>(5), std::optional<int>()})
      .print("", {.parallelism = 2});
  ::testing::internal::CaptureStdout();
  parallel.execute();
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_TRUE(out == "0> 5\n1> none\n" || out == "1> none\n0> 5\n") << out;
}

}  // namespace
}  // namespace sage
