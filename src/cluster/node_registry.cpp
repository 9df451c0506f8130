#include "cluster/node_registry.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace sage::cluster {

std::optional<std::uint64_t> NodeRegistry::join(const rpc::JoinRequest& request,
                                                std::int64_t now_ms) {
  auto it = nodes_.find(request.node_id());
  if (it != nodes_.end() && it->second.alive) return std::nullopt;
  Node& node = nodes_[request.node_id()];
  node = Node{};
  node.host = request.host();
  node.total = ResourceSet::of(request.resources());
  node.gpu_used.assign(static_cast<std::size_t>(request.resources().num_gpus()), false);
  node.alive = true;
  node.last_heartbeat_ms = now_ms;
  node.session = ++sessions_;
  spdlog::info("node {} joined from {} with {}", request.node_id(), request.host(),
               describe(node.total));
  return node.session;
}

bool NodeRegistry::in_session(const std::string& node_id, std::uint64_t session) const {
  auto it = nodes_.find(node_id);
  return it != nodes_.end() && it->second.session == session && it->second.alive;
}

bool NodeRegistry::heartbeat(const std::string& node_id, std::int64_t now_ms) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || !it->second.alive) return false;
  it->second.last_heartbeat_ms = now_ms;
  return true;
}

std::vector<std::string> NodeRegistry::silent_since(std::int64_t cutoff_ms) const {
  std::vector<std::string> silent;
  for (const auto& [id, node] : nodes_) {
    if (node.alive && node.last_heartbeat_ms < cutoff_ms) silent.push_back(id);
  }
  return silent;
}

void NodeRegistry::mark_dead(const std::string& node_id) {
  Node& node = nodes_.at(node_id);
  node.alive = false;
  node.commands.clear();
  node.used = {};
}

void NodeRegistry::send(const std::string& node_id, rpc::WorkerCommand command) {
  auto it = nodes_.find(node_id);
  if (it != nodes_.end() && it->second.alive) it->second.commands.push_back(std::move(command));
}

std::optional<rpc::WorkerCommand> NodeRegistry::take_command(const std::string& node_id) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || it->second.commands.empty()) return std::nullopt;
  rpc::WorkerCommand command = std::move(it->second.commands.front());
  it->second.commands.pop_front();
  return command;
}

bool NodeRegistry::any_alive() const {
  return std::any_of(nodes_.begin(), nodes_.end(), [](const auto& n) { return n.second.alive; });
}

Rooms NodeRegistry::rooms(bool idle) const {
  Rooms rooms;
  for (const auto& [id, node] : nodes_) {
    if (!node.alive || node.total.cpus <= 0) continue;
    NodeRoom& room = rooms[id];
    room.memory_counted = node.total.memory_bytes != 0;
    room.free = node.total;
    if (idle) {
      room.gpu_used.assign(node.gpu_used.size(), false);
    } else {
      room.free -= node.used;
      room.gpu_used = node.gpu_used;
    }
  }
  return rooms;
}

Rooms NodeRegistry::free_rooms() const { return rooms(/*idle=*/false); }
Rooms NodeRegistry::idle_rooms() const { return rooms(/*idle=*/true); }

void NodeRegistry::hold(const std::vector<Hold>& holds) {
  for (const Hold& hold : holds) {
    Node& node = nodes_.at(hold.node_id);
    node.used += hold.held;
    for (int g : hold.gpus) node.gpu_used[g] = true;
  }
}

void NodeRegistry::release(const std::vector<Hold>& holds) {
  for (const Hold& hold : holds) {
    auto it = nodes_.find(hold.node_id);
    if (it == nodes_.end()) continue;
    Node& node = it->second;
    node.used -= hold.held;
    for (int g : hold.gpus) {
      if (g < static_cast<int>(node.gpu_used.size())) node.gpu_used[g] = false;
    }
  }
}

void NodeRegistry::list(rpc::ClusterInfo* info) const {
  for (const auto& [id, node] : nodes_) {
    auto* out = info->add_nodes();
    out->set_node_id(id);
    out->set_address(node.host);
    *out->mutable_total() = node.total.to_message();
    *out->mutable_used() = node.used.to_message();
    out->set_alive(node.alive);
    out->set_last_heartbeat_ms(node.last_heartbeat_ms);
  }
}

}  // namespace sage::cluster
