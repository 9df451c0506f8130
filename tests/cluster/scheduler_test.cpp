// The scheduler's placements, table by table, including the odd mixes
// docs/cluster.md ("Scheduling") warns about.
#include "cluster/scheduler.hpp"

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

namespace sage::cluster {
namespace {

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

struct NodeSpec {
  std::string id;
  ResourceSet free;
  bool memory_counted = true;
};

struct ChainSpec {
  std::string name;
  int parallelism = 1;
  ResourceSet need;
  bool reserves = true;
};

Rooms rooms_of(const std::vector<NodeSpec>& nodes) {
  Rooms rooms;
  for (const auto& node : nodes) {
    rooms[node.id] =
        NodeRoom{node.free, std::vector<bool>(node.free.gpus, false), node.memory_counted};
  }
  return rooms;
}

rpc::SubmitRequest request_of(const std::vector<ChainSpec>& chains) {
  rpc::SubmitRequest request;
  for (const auto& spec : chains) {
    auto* chain = request.add_chains();
    chain->add_operators(spec.name);
    chain->set_parallelism(spec.parallelism);
    chain->set_reserves(spec.reserves);
    *chain->mutable_resources() = spec.need.to_message();
  }
  return request;
}

std::vector<std::string> nodes_of(const Assignment& assignment) {
  std::vector<std::string> nodes;
  for (const auto& hold : assignment.holds) nodes.push_back(hold.node_id);
  return nodes;
}

struct PlacementCase {
  std::string what;
  std::vector<NodeSpec> nodes;
  std::vector<ChainSpec> chains;
  std::vector<std::string> expected;  // node of each instance, in task order
  std::string stuck;                  // or the instance left without room
};

// gtest (and so ctest's test names) shows a case by what it is about.
void PrintTo(const PlacementCase& c, std::ostream* out) { *out << c.what; }

class PlacementTest : public ::testing::TestWithParam<PlacementCase> {};

TEST_P(PlacementTest, PlacesAsTheDocsSay) {
  const PlacementCase& c = GetParam();
  const Assignment assignment = assign(request_of(c.chains), rooms_of(c.nodes));
  EXPECT_EQ(assignment.stuck, c.stuck) << c.what;
  EXPECT_EQ(nodes_of(assignment), c.expected) << c.what;
}

const ResourceSet kTwoCpus{2, 0, 0};
const ResourceSet kOneCpu{1, 0, 0};

INSTANTIATE_TEST_SUITE_P(
    Scheduler, PlacementTest,
    ::testing::Values(
        PlacementCase{"spread: one instance per node, the fewest of the job's first",
                      {{"a", kTwoCpus}, {"b", kTwoCpus}, {"c", kTwoCpus}},
                      {{"map", 3, kOneCpu}},
                      {"a", "b", "c"}},
        PlacementCase{"spread: among equals, the node with the most free CPUs",
                      {{"a", {1, 0, 0}}, {"b", {4, 0, 0}}},
                      {{"map", 1, kOneCpu}},
                      {"b"}},
        PlacementCase{"spreading strands the big instance; packing gives it a node of its own",
                      {{"a", kTwoCpus}, {"b", kTwoCpus}, {"c", kTwoCpus}},
                      {{"small", 3, kOneCpu}, {"big", 1, kTwoCpus}},
                      {"b", "b", "c", "a"}},
        PlacementCase{"an operator without resources holds nothing and fits a busy node",
                      {{"busy", {0, 0, 0}}},
                      {{"plain", 2, kOneCpu, /*reserves=*/false}},
                      {"busy", "busy"}},
        PlacementCase{"a node that declared no memory does not count it",
                      {{"a", {2, 0, 0}, /*memory_counted=*/false}},
                      {{"hungry", 2, {1, 0, 64 * kGiB}}},
                      {"a", "a"}},
        PlacementCase{"memory is counted where declared",
                      {{"a", {4, 0, 3 * kGiB}}, {"b", {4, 0, 3 * kGiB}}},
                      {{"model", 3, {1, 0, 2 * kGiB}}},
                      {},
                      "1 CPUs, 0 GPUs, 2048 MiB memory for an instance of 'model'"},
        PlacementCase{"fractional CPUs that add up exactly fit despite rounding",
                      {{"a", {0.3, 0, 0}}},
                      {{"x", 1, {0.1, 0, 0}}, {"y", 1, {0.2, 0, 0}}},
                      {"a", "a"}},
        PlacementCase{"GPUs are whole: two 1-GPU instances need two GPUs",
                      {{"a", {8, 1, 0}}, {"b", {8, 1, 0}}},
                      {{"train", 2, {1, 1, 0}}},
                      {"a", "b"}},
        PlacementCase{"no room now: says which instance waits",
                      {{"a", {1, 0, 0}}},
                      {{"announce", 1, kTwoCpus}},
                      {},
                      "2 CPUs, 0 GPUs, 0 MiB memory for an instance of 'announce'"},
        PlacementCase{"packing may strand memory: a third arrangement is not searched",
                      {{"a", {2, 0, 4 * kGiB}}, {"b", {3, 0, 1 * kGiB}}},
                      {{"small", 1, kOneCpu}, {"big", 1, kTwoCpus}, {"model", 1, {1, 0, 4 * kGiB}}},
                      {},
                      "1 CPUs, 0 GPUs, 4096 MiB memory for an instance of 'model'"}));

TEST(SchedulerTest, InstancesTakeFreeGpusOnly) {
  Rooms rooms = rooms_of({{"a", {8, 3, 0}}});
  rooms["a"].gpu_used = {true, false, false, false};  // four devices, device 0 held
  const Assignment assignment = assign(request_of({{"train", 2, {1, 1, 0}}}), rooms);
  ASSERT_TRUE(assignment.placed()) << assignment.stuck;
  EXPECT_EQ(assignment.holds[0].gpus, std::vector<int>{1});
  EXPECT_EQ(assignment.holds[1].gpus, std::vector<int>{2});
  EXPECT_EQ(assignment.holds[1].held, (ResourceSet{1, 1, 0}));
}

TEST(SchedulerTest, AnInstanceWithoutResourcesHoldsNothing) {
  const Assignment assignment = assign(request_of({{"plain", 1, {1, 1, kGiB}, /*reserves=*/false}}),
                                       rooms_of({{"a", {2, 2, 4 * kGiB}}}));
  ASSERT_TRUE(assignment.placed());
  EXPECT_EQ(assignment.holds[0].held, ResourceSet{});
  EXPECT_TRUE(assignment.holds[0].gpus.empty());
}

struct NeverFitsCase {
  std::string what;
  std::vector<NodeSpec> idle;
  std::vector<ChainSpec> chains;
  std::string says;  // a part of the refusal; empty: the job is accepted
};

void PrintTo(const NeverFitsCase& c, std::ostream* out) { *out << c.what; }

class NeverFitsTest : public ::testing::TestWithParam<NeverFitsCase> {};

TEST_P(NeverFitsTest, RefusesOnlyWhatCouldNeverRun) {
  const NeverFitsCase& c = GetParam();
  const auto refusal = never_fits(request_of(c.chains), rooms_of(c.idle));
  if (c.says.empty()) {
    EXPECT_EQ(refusal, std::nullopt) << c.what;
  } else {
    ASSERT_TRUE(refusal.has_value()) << c.what;
    EXPECT_NE(refusal->find(c.says), std::string::npos) << c.what << ": " << *refusal;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Scheduler, NeverFitsTest,
    ::testing::Values(
        NeverFitsCase{"no nodes yet: the job waits for them", {}, {{"map", 1, {64, 0, 0}}}, ""},
        NeverFitsCase{"an instance larger than every node",
                      {{"head", {2, 0, 4 * kGiB}}, {"w1", {1, 0, 0}}},
                      {{"hungry", 1, {64, 0, 0}}},
                      "operator 'hungry' needs 64 CPUs, 0 GPUs, 0 MiB memory per instance, but "
                      "no node has that (the largest, 'head' has 2 CPUs, 0 GPUs, 4096 MiB "
                      "memory)"},
        NeverFitsCase{"each instance fits a node but not all at once",
                      {{"head", kTwoCpus}, {"w1", kTwoCpus}, {"w2", kTwoCpus}},
                      {{"wide", 4, {1.5, 0, 0}}},
                      "the job's instances need 6 CPUs, 0 GPUs, 0 MiB memory in all and do not "
                      "fit the cluster even when it is idle: there is no room left for 1.5 CPUs, "
                      "0 GPUs, 0 MiB memory for an instance of 'wide' (nodes: 'head' 2 CPUs"},
        NeverFitsCase{"fits once packed",
                      {{"a", kTwoCpus}, {"b", kTwoCpus}, {"c", kTwoCpus}},
                      {{"small", 3, kOneCpu}, {"big", 1, kTwoCpus}},
                      ""},
        NeverFitsCase{"an operator without resources fits a node with fewer CPUs than it names",
                      {{"small", {0.5, 0, 0}}},
                      {{"plain", 3, kOneCpu, /*reserves=*/false}},
                      ""},
        NeverFitsCase{"a GPU where no node has one",
                      {{"a", {8, 0, 0}}},
                      {{"train", 1, {1, 1, 0}}},
                      "needs 1 CPUs, 1 GPUs"},
        NeverFitsCase{"memory on a node that declared none is not counted",
                      {{"a", {2, 0, 0}, /*memory_counted=*/false}},
                      {{"model", 2, {1, 0, 64 * kGiB}}},
                      ""}));

TEST(SchedulerTest, ProcessesAreOnePerNodeInTheOrderOfFirstUse) {
  std::vector<Hold> holds = {{"b", {1, 1, kGiB}, {3}}, {"a", {}, {}}, {"b", {1, 2, kGiB}, {0, 1}}};
  const ProcessLayout layout = lay_out_processes(holds, request_of({{"map", 3}}));
  ASSERT_EQ(layout.processes.size(), 2u);
  EXPECT_EQ(layout.processes[0].node_id, "b");
  EXPECT_EQ(layout.processes[0].gpus, (std::vector<int>{3, 0, 1}));
  EXPECT_EQ(layout.processes[0].memory_bytes, 2 * kGiB);
  EXPECT_EQ(layout.processes[1].node_id, "a");
  EXPECT_EQ(layout.process_of_task, (std::vector<int>{0, 1, 0}));
  // CUDA numbers the process's devices in CUDA_VISIBLE_DEVICES order.
  EXPECT_EQ(layout.gpus_of_task, (std::vector<std::vector<int>>{{0}, {}, {1, 2}}));
}

// Holds on `nodes`, one per instance in task order.
std::vector<Hold> holds_on(const std::vector<std::string>& nodes) {
  std::vector<Hold> holds;
  for (const auto& node : nodes) holds.push_back({node, {}, {}});
  return holds;
}

TEST(SchedulerTest, SeveralProcessesPerNodeShareEachOperatorsInstancesOnTheNode) {
  rpc::SubmitRequest request = request_of({{"source", 1}, {"map", 4}, {"sink", 1}});
  request.set_processes_per_node(2);
  const ProcessLayout layout = lay_out_processes(holds_on({"a", "a", "b", "a", "b", "a"}), request);
  ASSERT_EQ(layout.processes.size(), 4u);
  std::vector<std::string> nodes;
  for (const auto& process : layout.processes) nodes.push_back(process.node_id);
  EXPECT_EQ(nodes, (std::vector<std::string>{"a", "b", "a", "b"}));
  // The source, the first map instance of each node and the sink share the
  // node's first process; the second map instance of each node has its own.
  EXPECT_EQ(layout.process_of_task, (std::vector<int>{0, 0, 1, 2, 3, 0}));
}

TEST(SchedulerTest, InstancesAreDealtOverTheProcessesOfTheirNodeInTurn) {
  rpc::SubmitRequest request = request_of({{"map", 5}});
  request.set_processes_per_node(2);
  const ProcessLayout layout = lay_out_processes(holds_on({"a", "a", "a", "a", "a"}), request);
  ASSERT_EQ(layout.processes.size(), 2u);
  EXPECT_EQ(layout.process_of_task, (std::vector<int>{0, 1, 0, 1, 0}));
}

TEST(SchedulerTest, NoProcessIsStartedWithoutATask) {
  // Three processes per node are allowed, but no operator has more than two
  // instances on a node.
  rpc::SubmitRequest request = request_of({{"source", 1}, {"map", 4}});
  request.set_processes_per_node(3);
  const ProcessLayout layout = lay_out_processes(holds_on({"a", "a", "b", "a", "b"}), request);
  EXPECT_EQ(layout.processes.size(), 4u);
  EXPECT_EQ(layout.process_of_task, (std::vector<int>{0, 0, 1, 2, 3}));
  // 0 means one process per node, as 1 does.
  request.set_processes_per_node(0);
  EXPECT_EQ(lay_out_processes(holds_on({"a", "a", "b", "a", "b"}), request).process_of_task,
            (std::vector<int>{0, 0, 1, 0, 1}));
}

TEST(SchedulerTest, ResourcesNeverGoBelowZero) {
  ResourceSet used{1, 1, kGiB};
  used -= ResourceSet{1.5, 2, 2 * kGiB};
  EXPECT_EQ(used, ResourceSet{});
  used += ResourceSet{0.5, 1, kGiB};
  EXPECT_EQ(used * 3, (ResourceSet{1.5, 3, 3 * kGiB}));
  EXPECT_EQ(describe(used), "0.5 CPUs, 1 GPUs, 1024 MiB memory");
}

}  // namespace
}  // namespace sage::cluster
