// The head's node registry: sessions, heartbeats, command queues and what
// the nodes' jobs hold there.
#include "cluster/node_registry.hpp"

#include <gtest/gtest.h>

namespace sage::cluster {
namespace {

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

rpc::JoinRequest join_request(const std::string& node_id, double cpus, int gpus = 0,
                              std::uint64_t memory = 4 * kGiB) {
  rpc::JoinRequest request;
  request.set_node_id(node_id);
  request.set_host("10.0.0.1");
  request.mutable_resources()->set_num_cpus(cpus);
  request.mutable_resources()->set_num_gpus(gpus);
  request.mutable_resources()->set_memory_bytes(memory);
  return request;
}

rpc::WorkerCommand stop_command(const std::string& job_id) {
  rpc::WorkerCommand command;
  command.mutable_stop()->set_job_id(job_id);
  return command;
}

TEST(NodeRegistryTest, AnAliveNodeCannotJoinTwiceADeadOneRejoinsAsNew) {
  NodeRegistry nodes;
  const auto first = nodes.join(join_request("w1", 2), 0);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(nodes.join(join_request("w1", 8), 0), std::nullopt) << "a node of that id is alive";
  EXPECT_TRUE(nodes.in_session("w1", *first));
  nodes.mark_dead("w1");
  EXPECT_FALSE(nodes.in_session("w1", *first));
  const auto second = nodes.join(join_request("w1", 8), 0);
  ASSERT_TRUE(second.has_value());
  EXPECT_NE(*second, *first);
  EXPECT_FALSE(nodes.in_session("w1", *first)) << "the old stream must end";
  EXPECT_EQ(nodes.idle_rooms().at("w1").free.cpus, 8);
}

TEST(NodeRegistryTest, HeartbeatsKeepANodeAliveSilenceIsSeen) {
  NodeRegistry nodes;
  nodes.join(join_request("w1", 2), 1000);
  nodes.join(join_request("w2", 2), 1000);
  EXPECT_TRUE(nodes.heartbeat("w1", 5000));
  EXPECT_EQ(nodes.silent_since(4000), std::vector<std::string>{"w2"});
  nodes.mark_dead("w2");
  EXPECT_TRUE(nodes.silent_since(4000).empty()) << "a dead node is not silent again";
  EXPECT_FALSE(nodes.heartbeat("w2", 6000)) << "a dead node must join again";
  EXPECT_FALSE(nodes.heartbeat("w3", 6000)) << "an unknown node must join";
  EXPECT_TRUE(nodes.any_alive());
}

TEST(NodeRegistryTest, CommandsQueueInOrderAndADeadNodeGetsNone) {
  NodeRegistry nodes;
  nodes.join(join_request("w1", 2), 0);
  EXPECT_EQ(nodes.take_command("w1"), std::nullopt);
  nodes.send("w1", stop_command("job-a"));
  nodes.send("w1", stop_command("job-b"));
  EXPECT_EQ(nodes.take_command("w1")->stop().job_id(), "job-a");
  nodes.send("w1", stop_command("job-c"));
  nodes.mark_dead("w1");
  EXPECT_EQ(nodes.take_command("w1"), std::nullopt) << "a dead node's queue goes";
  nodes.send("w1", stop_command("job-d"));
  EXPECT_EQ(nodes.take_command("w1"), std::nullopt);
  nodes.send("nowhere", stop_command("job-e"));
  EXPECT_EQ(nodes.take_command("nowhere"), std::nullopt);
}

TEST(NodeRegistryTest, HoldsTakeFromTheFreeRoomAndReleasesGiveBack) {
  NodeRegistry nodes;
  nodes.join(join_request("w1", 4, /*gpus=*/2), 0);
  const std::vector<Hold> holds = {{"w1", {1.5, 1, kGiB}, {1}}};
  nodes.hold(holds);
  NodeRoom room = nodes.free_rooms().at("w1");
  EXPECT_EQ(room.free, (ResourceSet{2.5, 1, 3 * kGiB}));
  EXPECT_EQ(room.gpu_used, (std::vector<bool>{false, true}));
  EXPECT_EQ(nodes.idle_rooms().at("w1").free, (ResourceSet{4, 2, 4 * kGiB}));
  EXPECT_EQ(nodes.idle_rooms().at("w1").gpu_used, (std::vector<bool>{false, false}));
  rpc::ClusterInfo info;
  nodes.list(&info);
  ASSERT_EQ(info.nodes_size(), 1);
  EXPECT_EQ(info.nodes(0).used().num_cpus(), 1.5);
  EXPECT_EQ(info.nodes(0).total().num_gpus(), 2);
  nodes.release(holds);
  room = nodes.free_rooms().at("w1");
  EXPECT_EQ(room.free, (ResourceSet{4, 2, 4 * kGiB}));
  EXPECT_EQ(room.gpu_used, (std::vector<bool>{false, false}));
}

TEST(NodeRegistryTest, OnlyAliveNodesWithCpusAreRooms) {
  NodeRegistry nodes;
  EXPECT_FALSE(nodes.any_alive());
  nodes.join(join_request("cpu", 2), 0);
  nodes.join(join_request("none", 0), 0);  // a node that runs no work
  nodes.join(join_request("dead", 2), 0);
  nodes.join(join_request("unmetered", 2, 0, /*memory=*/0), 0);
  nodes.mark_dead("dead");
  const Rooms rooms = nodes.free_rooms();
  ASSERT_EQ(rooms.size(), 2u);
  EXPECT_TRUE(rooms.at("cpu").memory_counted);
  EXPECT_FALSE(rooms.at("unmetered").memory_counted) << "memory 0: not counted";
}

}  // namespace
}  // namespace sage::cluster
