// End-to-end: every partitioning delivers exactly the expected multiset of
// records for parallelism 1..8 on every stage.
#include <gtest/gtest.h>

#include <numeric>
#include <ostream>
#include <string>
#include <tuple>

#include "support/collect.hpp"

namespace sage {
namespace {

// The writers' precomputed routing picks the instance that key_group_of()
// and instance_of_key_group() name (the definition snapshots and restores
// use), for power-of-two and other numbers of key groups.
TEST(KeyGroupRoutingTest, PicksTheInstanceOfTheKeysGroupForAnyNumberOfGroups) {
  for (const int max_parallelism : {1, 7, 100, 128}) {
    for (const int parallelism : {1, 3, 7}) {
      if (parallelism > max_parallelism) continue;
      const detail::KeyGroupRouting routing(max_parallelism, parallelism);
      for (long long key = 0; key < 5'000; ++key) {
        const std::uint64_t hash = stable_hash(key);
        const int group = detail::key_group_of(hash, max_parallelism);
        ASSERT_EQ(routing.instance_of(hash),
                  detail::instance_of_key_group(group, max_parallelism, parallelism))
            << "key " << key << ", " << max_parallelism << " groups, parallelism " << parallelism;
      }
    }
  }
}

using testing::Collected;
using testing::CollectSink;

constexpr long long kRecords = 1'000'000;

enum class Edge { kForward, kRebalance, kKeyBy, kCustom, kBroadcast };

std::string edge_name(Edge e) {
  switch (e) {
    case Edge::kForward:
      return "forward";
    case Edge::kRebalance:
      return "rebalance";
    case Edge::kKeyBy:
      return "key_by";
    case Edge::kCustom:
      return "custom";
    case Edge::kBroadcast:
      return "broadcast";
  }
  return "?";
}

void PrintTo(Edge e, std::ostream* out) { *out << edge_name(e); }

// Routes by value, to check that partition() sees the record and the count.
struct ModuloPartitioner {
  int partition(const long long& record, int num_partitions) const {
    return static_cast<int>(record % num_partitions);
  }
};

class PartitioningTest : public ::testing::TestWithParam<std::tuple<Edge, int>> {};

TEST_P(PartitioningTest, DeliversExactlyTheExpectedRecords) {
  const auto [edge, parallelism] = GetParam();
  // Broadcast multiplies records by the consumer's parallelism; keep its total
  // volume at the others' level.
  const long long records = edge == Edge::kBroadcast ? kRecords / parallelism : kRecords;
  auto collected = std::make_shared<Collected<long long>>();

  LocalEnvironment env("partitioning-" + edge_name(edge));
  auto source = env.from_sequence(0, records, Options{.parallelism = parallelism});
  auto doubled = source.map([](long long x) { return 2 * x; }, {.parallelism = parallelism});
  const Options next{.name = "after-edge", .parallelism = parallelism};
  DataStream<long long> routed = [&] {
    switch (edge) {
      case Edge::kForward:
        return doubled.forward().map([](long long x) { return x + 1; }, next);
      case Edge::kRebalance:
        return doubled.rebalance().map([](long long x) { return x + 1; }, next);
      case Edge::kKeyBy:
        return doubled.key_by([](long long x) { return x % 1000; })
            .map([](long long x) { return x + 1; }, next);
      case Edge::kCustom:
        return doubled.partition_custom(ModuloPartitioner{})
            .map([](long long x) { return x + 1; }, next);
      case Edge::kBroadcast:
        return doubled.broadcast().map([](long long x) { return x + 1; }, next);
    }
    throw std::logic_error("unknown edge");
  }();
  routed.rebalance().sink<CollectSink<long long>>(Options{.parallelism = parallelism}, collected);
  const JobResult result = env.execute();

  EXPECT_EQ(result.state, JobState::kFinished);
  EXPECT_EQ(collected->closed_instances(), parallelism);
  const int copies = edge == Edge::kBroadcast ? parallelism : 1;
  std::vector<long long> expected;
  expected.reserve(static_cast<std::size_t>(records * copies));
  for (long long x = 0; x < records; ++x) {
    for (int c = 0; c < copies; ++c) expected.push_back(2 * x + 1);
  }
  const auto actual = collected->sorted();
  ASSERT_EQ(actual.size(), expected.size());
  EXPECT_TRUE(actual == expected) << "records differ from the expected multiset";
}

INSTANTIATE_TEST_SUITE_P(AllEdges, PartitioningTest,
                         ::testing::Combine(::testing::Values(Edge::kForward, Edge::kRebalance,
                                                              Edge::kKeyBy, Edge::kCustom,
                                                              Edge::kBroadcast),
                                            ::testing::Range(1, 9)),
                         [](const auto& info) {
                           return edge_name(std::get<0>(info.param)) + "_p" +
                                  std::to_string(std::get<1>(info.param));
                         });

// Different parallelism on every stage, so every edge repartitions.
TEST(PartitioningTest, MixedParallelismKeepsEveryRecord) {
  auto collected = std::make_shared<Collected<long long>>();
  LocalEnvironment env("mixed");
  env.from_sequence(0, kRecords, Options{.parallelism = 3})
      .map([](long long x) { return x; }, {.parallelism = 5})
      .filter([](long long x) { return x % 2 == 0; }, {.parallelism = 7})
      .key_by([](long long x) { return x % 97; })
      .flat_map(
          [](long long x, Collector<long long>& out) {
            out.collect(x);
            out.collect(-x);
          },
          {.parallelism = 2})
      .sink<CollectSink<long long>>(Options{.parallelism = 8}, collected);
  env.execute();
  std::vector<long long> expected;
  for (long long x = 0; x < kRecords; x += 2) {
    expected.push_back(x);
    expected.push_back(-x);
  }
  std::sort(expected.begin(), expected.end());
  EXPECT_TRUE(collected->sorted() == expected);
}

}  // namespace
}  // namespace sage
