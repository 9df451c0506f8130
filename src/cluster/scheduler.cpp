#include "cluster/scheduler.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

namespace sage::cluster {
namespace {

// Slack on the CPU count in fits(): sums of fractional CPUs are not exact.
constexpr double kCpuSlack = 1e-9;

std::string first_operator(const rpc::ChainSpec& chain) {
  return chain.operators().empty() ? "?" : chain.operators(0);
}

// One pass of assign(): spreading, or packing when `pack`.
Assignment assign_once(const rpc::SubmitRequest& request, Rooms rooms, bool pack) {
  struct Instance {
    const rpc::ChainSpec* chain;
    std::size_t task;
  };
  std::vector<Instance> order;
  for (const auto& chain : request.chains()) {
    for (int i = 0; i < chain.parallelism(); ++i) order.push_back({&chain, order.size()});
  }
  if (pack) {
    const auto size = [](const Instance& x) {
      const auto& r = x.chain->resources();
      return std::make_tuple(x.chain->reserves(), r.num_gpus(), r.num_cpus(), r.memory_bytes());
    };
    std::stable_sort(order.begin(), order.end(),
                     [&](const Instance& a, const Instance& b) { return size(a) > size(b); });
  }
  Assignment assignment;
  assignment.holds.resize(order.size());
  std::map<std::string, int> placed_here;
  for (const Instance& instance : order) {
    const auto& chain = *instance.chain;
    const ResourceSet need = ResourceSet::of(chain.resources());
    const bool reserve = chain.reserves();
    std::string best;
    for (const auto& [id, room] : rooms) {
      if (reserve && !fits(need, room)) continue;
      if (best.empty()) {
        best = id;
        continue;
      }
      const double free = room.free.cpus, best_free = rooms.at(best).free.cpus;
      const bool better = pack && reserve
                              ? free < best_free
                              : placed_here[id] < placed_here[best] ||
                                    (placed_here[id] == placed_here[best] && free > best_free);
      if (better) best = id;
    }
    if (best.empty()) {
      return {{}, describe(need) + " for an instance of '" + first_operator(chain) + "'"};
    }
    Hold hold{.node_id = best};
    if (reserve) {
      NodeRoom& room = rooms.at(best);
      for (int g = 0; g < static_cast<int>(room.gpu_used.size()) &&
                      static_cast<int>(hold.gpus.size()) < need.gpus;
           ++g) {
        if (!room.gpu_used[g]) {
          room.gpu_used[g] = true;
          hold.gpus.push_back(g);
        }
      }
      hold.held = {need.cpus, static_cast<int>(hold.gpus.size()), need.memory_bytes};
      room.free -= need;
    }
    ++placed_here[best];
    assignment.holds[instance.task] = std::move(hold);
  }
  return assignment;
}

}  // namespace

ResourceSet ResourceSet::of(const rpc::Resources& message) {
  return {message.num_cpus(), message.num_gpus(), message.memory_bytes()};
}

rpc::Resources ResourceSet::to_message() const {
  rpc::Resources message;
  message.set_num_cpus(cpus);
  message.set_num_gpus(gpus);
  message.set_memory_bytes(memory_bytes);
  return message;
}

ResourceSet& ResourceSet::operator+=(const ResourceSet& other) {
  cpus += other.cpus;
  gpus += other.gpus;
  memory_bytes += other.memory_bytes;
  return *this;
}

ResourceSet& ResourceSet::operator-=(const ResourceSet& other) {
  cpus = std::max(0.0, cpus - other.cpus);
  gpus = std::max(0, gpus - other.gpus);
  memory_bytes -= std::min(memory_bytes, other.memory_bytes);
  return *this;
}

ResourceSet ResourceSet::operator*(int count) const {
  return {cpus * count, gpus * count, memory_bytes * static_cast<std::uint64_t>(count)};
}

std::string describe(const ResourceSet& resources) {
  return fmt::format("{:g} CPUs, {} GPUs, {} MiB memory", resources.cpus, resources.gpus,
                     resources.memory_bytes >> 20);
}

bool fits(const ResourceSet& need, const NodeRoom& room) {
  return room.free.cpus + kCpuSlack >= need.cpus && room.free.gpus >= need.gpus &&
         (!room.memory_counted || room.free.memory_bytes >= need.memory_bytes);
}

Assignment assign(const rpc::SubmitRequest& request, const Rooms& rooms) {
  Assignment spread = assign_once(request, rooms, /*pack=*/false);
  if (spread.placed()) return spread;
  Assignment packed = assign_once(request, rooms, /*pack=*/true);
  return packed.placed() ? packed : spread;
}

std::optional<std::string> never_fits(const rpc::SubmitRequest& request, const Rooms& idle) {
  if (idle.empty()) return std::nullopt;  // wait for workers: PENDING
  for (const auto& chain : request.chains()) {
    const ResourceSet need = ResourceSet::of(chain.resources());
    if (!chain.reserves() || std::any_of(idle.begin(), idle.end(), [&](const auto& node) {
          return fits(need, node.second);
        })) {
      continue;
    }
    const auto largest = std::max_element(
        idle.begin(), idle.end(),
        [](const auto& a, const auto& b) { return a.second.free.cpus < b.second.free.cpus; });
    return "operator '" + first_operator(chain) + "' needs " + describe(need) +
           " per instance, but no node has that (the largest, '" + largest->first + "' has " +
           describe(largest->second.free) +
           "); add a node with those resources or lower the operator's resources";
  }
  // Each instance fits some node; the scheduler must also find room for all
  // of them at once on an idle cluster, or the job would wait forever.
  const Assignment assignment = assign(request, idle);
  if (assignment.placed()) return std::nullopt;
  ResourceSet total;
  for (const auto& chain : request.chains()) {
    if (chain.reserves()) total += ResourceSet::of(chain.resources()) * chain.parallelism();
  }
  std::string cluster;
  for (const auto& [id, room] : idle) {
    cluster += (cluster.empty() ? "'" : ", '") + id + "' " + describe(room.free);
  }
  return "the job's instances need " + describe(total) +
         " in all and do not fit the cluster even when it is idle: there is no room left for " +
         assignment.stuck + " (nodes: " + cluster +
         "); add nodes or lower the operators' parallelism or resources";
}

ProcessLayout lay_out_processes(const std::vector<Hold>& holds, const rpc::SubmitRequest& request) {
  const int per_node = std::max(1, request.processes_per_node());
  ProcessLayout layout;
  std::map<std::pair<std::string, int>, int> process_of_slot;    // (node, slot)
  std::map<std::pair<std::string, int>, int> instances_on_node;  // (node, chain)
  std::size_t task = 0;
  for (int chain = 0; chain < request.chains_size(); ++chain) {
    for (int i = 0; i < request.chains(chain).parallelism(); ++i) {
      const Hold& hold = holds[task++];
      const int slot = instances_on_node[{hold.node_id, chain}]++ % per_node;
      auto [it, added] = process_of_slot.try_emplace({hold.node_id, slot},
                                                     static_cast<int>(layout.processes.size()));
      if (added) layout.processes.push_back({.node_id = hold.node_id});
      ProcessLayout::Process& process = layout.processes[it->second];
      // The process sees its GPUs in this order (CUDA_VISIBLE_DEVICES), so
      // the task's are the next ones CUDA numbers.
      std::vector<int>& ordinals = layout.gpus_of_task.emplace_back();
      for (std::size_t g = 0; g < hold.gpus.size(); ++g) {
        ordinals.push_back(static_cast<int>(process.gpus.size() + g));
      }
      process.gpus.insert(process.gpus.end(), hold.gpus.begin(), hold.gpus.end());
      process.memory_bytes += hold.held.memory_bytes;
      layout.process_of_task.push_back(it->second);
    }
  }
  return layout;
}

}  // namespace sage::cluster
