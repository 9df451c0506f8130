// The worker nodes the head knows: what each offers and what its jobs hold
// there, its liveness (join sessions, heartbeats; a silent node is dead) and
// the commands queued for it until its Join stream sends them. Not
// thread-safe: the head calls it under its one mutex (HeadState).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cluster/scheduler.hpp"
#include "sage.pb.h"

namespace sage::cluster {

class NodeRegistry {
 public:
  // Starts a session for the node `request` names, as new: it replaces a
  // dead node of the same id. nullopt, changing nothing, when a node of that
  // id is alive.
  std::optional<std::uint64_t> join(const rpc::JoinRequest& request, std::int64_t now_ms);
  // Whether `session` is the node's and the node is alive.
  bool in_session(const std::string& node_id, std::uint64_t session) const;
  // False when the node is unknown or dead: it must join again.
  bool heartbeat(const std::string& node_id, std::int64_t now_ms);
  // Alive nodes whose last heartbeat is older than `cutoff_ms`.
  std::vector<std::string> silent_since(std::int64_t cutoff_ms) const;
  // The node is dead: its queued commands go, and what its jobs held there
  // is void (it offers everything when it joins again).
  void mark_dead(const std::string& node_id);

  // Queues `command` for an alive node; a dead node gets none.
  void send(const std::string& node_id, rpc::WorkerCommand command);
  // The oldest queued command of the node, or nullopt.
  std::optional<rpc::WorkerCommand> take_command(const std::string& node_id);

  bool any_alive() const;
  // The alive nodes with CPUs as the scheduler sees them: with what they
  // have free now, or, idle, with everything they offer.
  Rooms free_rooms() const;
  Rooms idle_rooms() const;
  // Takes the holds' resources from their nodes, or gives them back.
  void hold(const std::vector<Hold>& holds);
  void release(const std::vector<Hold>& holds);

  // Every node, for `sage cluster status`.
  void list(rpc::ClusterInfo* info) const;

 private:
  struct Node {
    std::string host;
    ResourceSet total, used;
    std::vector<bool> gpu_used;  // by device index
    bool alive = false;
    std::int64_t last_heartbeat_ms = 0;
    std::deque<rpc::WorkerCommand> commands;
    std::uint64_t session = 0;
  };
  Rooms rooms(bool idle) const;

  std::map<std::string, Node> nodes_;
  std::uint64_t sessions_ = 0;
};

}  // namespace sage::cluster
