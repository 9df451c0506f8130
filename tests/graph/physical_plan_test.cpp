// The planner: which edges are chained, how channels are numbered, and the
// fingerprint that every process of a job must agree on.
#include "graph/physical_plan.hpp"

#include <gtest/gtest.h>

#include <sage/sage.hpp>

namespace sage::graph {
namespace {

// Exposes the graph an environment built, without running it.
class PlanningEnvironment : public Environment {
 public:
  PlanningEnvironment() : Environment("planning", ExecutionConfig{}) {}
  std::string submit(bool) override { return ""; }
  JobResult wait() override { return {}; }
  void stop() override {}
  PhysicalPlan plan() const { return PhysicalPlan::build(*graph_, config_); }
};

TEST(PhysicalPlanTest, ChainsForwardEdgesOfEqualParallelism) {
  PlanningEnvironment env;
  env.from_collection({1, 2, 3})                         // node 0, p1
      .map([](int x) { return x; })                      // node 1, p1: chained
      .map([](int x) { return x; }, {.parallelism = 4})  // node 2, p4: rebalance
      .filter([](int) { return true; })                  // node 3, p4: chained
      .rebalance()
      .sink([](int) {}, {.parallelism = 4});  // node 4: not chained
  const PhysicalPlan plan = env.plan();
  ASSERT_EQ(plan.chains().size(), 3u);
  EXPECT_EQ(plan.chains()[0].nodes, (std::vector<int>{0, 1}));
  EXPECT_TRUE(plan.chains()[0].is_source);
  EXPECT_EQ(plan.chains()[1].nodes, (std::vector<int>{2, 3}));
  EXPECT_EQ(plan.chains()[1].parallelism, 4);
  EXPECT_EQ(plan.chains()[2].nodes, (std::vector<int>{4}));
  EXPECT_TRUE(plan.is_chained(0));
  EXPECT_FALSE(plan.is_chained(1));
  EXPECT_EQ(plan.partitioning(1), Partitioning::kRebalance);
  EXPECT_TRUE(plan.is_chained(2));
  EXPECT_FALSE(plan.is_chained(3));
  EXPECT_EQ(plan.partitioning(3), Partitioning::kRebalance);
}

TEST(PhysicalPlanTest, ChannelsOnePerProducerConsumerPair) {
  PlanningEnvironment env;
  auto a = env.from_collection({1}, {.parallelism = 3});
  auto b = env.from_collection({2}, {.parallelism = 2});
  a.union_with(b).sink([](int) {}, {.parallelism = 3});
  const PhysicalPlan plan = env.plan();
  const int sink_chain = plan.chain_of(2);
  // Edge 0 (a -> sink) is forward (3 == 3) but not chained: the sink has two
  // inputs. Consumer 1 hears a's instance 1 and both instances of b.
  const auto channels = plan.input_channels(sink_chain, 1);
  ASSERT_EQ(channels.size(), 3u);
  EXPECT_EQ(channels[0].edge, 0);
  EXPECT_EQ(channels[0].producer_instance, 1);
  EXPECT_EQ(channels[1].edge, 1);
  EXPECT_EQ(channels[1].producer_instance, 0);
  EXPECT_EQ(channels[2].producer_instance, 1);
  EXPECT_EQ(plan.channel_index(1, 1, 1), 2u);
  EXPECT_EQ(plan.consumer_instances(0, 2), (std::vector<int>{2}));
  EXPECT_EQ(plan.consumer_instances(1, 0), (std::vector<int>{0, 1, 2}));
}

TEST(PhysicalPlanTest, FingerprintIsDeterministicAndSeesParallelism) {
  auto build = [](int parallelism) {
    PlanningEnvironment env;
    env.from_collection({1, 2}).map([](int x) { return x; }, {.parallelism = parallelism}).print();
    return env.plan().fingerprint();
  };
  EXPECT_EQ(build(2), build(2));
  EXPECT_NE(build(2), build(3));
  EXPECT_EQ(build(2).size(), 16u);
}

TEST(PhysicalPlanTest, RejectsEmptyGraphAndTooWideKeyedOperator) {
  PlanningEnvironment empty;
  EXPECT_THROW(empty.plan(), InvalidPlanError);

  PlanningEnvironment env;
  env.from_collection({1}).key_by([](int x) { return x; }).sink([](int) {}, {.parallelism = 129});
  try {
    env.plan();
    FAIL() << "a keyed operator wider than max_parallelism was accepted";
  } catch (const InvalidPlanError& e) {
    EXPECT_NE(std::string(e.what()).find("max_parallelism"), std::string::npos);
  }
}

}  // namespace
}  // namespace sage::graph

namespace sage::detail {
namespace {

struct Reading {
  std::string sensor;
  double value = 0;
  SAGE_FIELDS(sensor, value)
  friend bool operator==(const Reading&, const Reading&) = default;
};

TEST(EdgeCodecTest, BatchesRoundTripThroughBytes) {
  TypedEdgeFactory<Reading> edge;
  Batch<Reading> batch({{"a", 1.5}, {"b", -2}});
  Writer out;
  edge.encode(batch, out);
  auto decoded = edge.decode(out.buffer());
  EXPECT_EQ(static_cast<Batch<Reading>&>(*decoded).records, batch.records);
  EXPECT_THROW(edge.decode(std::string_view(out.buffer()).substr(0, 5)), SerializationError);
}

// A sender cuts a batch too large for a frame in two: the front half stays,
// the back half moves into a new batch, records in order.
TEST(EdgeCodecTest, SplitOffBackHalfKeepsEveryRecordInOrder) {
  TypedEdgeFactory<std::string> edge;
  Batch<std::string> batch({"a", "b", "c", "d", "e"});
  const auto back = edge.split_off_back_half(batch);
  EXPECT_EQ(batch.records, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(static_cast<Batch<std::string>&>(*back).records,
            (std::vector<std::string>{"c", "d", "e"}));
  Batch<std::string> two({"x", "y"});
  const auto last = edge.split_off_back_half(two);
  EXPECT_EQ(two.records, std::vector<std::string>{"x"});
  EXPECT_EQ(static_cast<Batch<std::string>&>(*last).records, std::vector<std::string>{"y"});
}

// A batch gives its vector back to its writer's recycler when it is destroyed,
// and the recycler keeps no more spares than its bound.
TEST(BatchRecyclerTest, ABatchGivesItsVectorBackAndSparesAreBounded) {
  auto recycler = std::make_shared<BatchRecycler<int>>(1);
  std::vector<int> records = recycler->take(64);
  ASSERT_GE(records.capacity(), 64u);
  records.assign({1, 2, 3});
  const int* storage = records.data();
  { Batch<int> batch(std::move(records), recycler); }
  std::vector<int> reused = recycler->take(64);
  EXPECT_EQ(reused.data(), storage) << "the destroyed batch's vector was not reused";
  EXPECT_TRUE(reused.empty());
  // Two batches back with room for one spare: the second vector is freed.
  { Batch<int> a(recycler->take(8), recycler), b(recycler->take(8), recycler); }
  const std::vector<int> first = recycler->take(0);
  const std::vector<int> second = recycler->take(0);
  EXPECT_GT(first.capacity(), 0u);
  EXPECT_EQ(second.capacity(), 0u);
}

}  // namespace
}  // namespace sage::detail
