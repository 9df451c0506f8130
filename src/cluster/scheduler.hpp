// The head's scheduler: where each instance of a job goes, as pure functions
// over what the nodes have free and what the instances need (docs/cluster.md,
// "Scheduling"). Spread, else pack; a job that does not fit even the idle
// cluster is refused at submit. No state, no locks: any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sage.pb.h"

namespace sage::cluster {

// CPUs, GPUs and memory: what a node offers, has free or has handed out, or
// what instances need. Subtraction stops at zero.
struct ResourceSet {
  double cpus = 0;
  int gpus = 0;
  std::uint64_t memory_bytes = 0;

  static ResourceSet of(const rpc::Resources& message);
  rpc::Resources to_message() const;
  ResourceSet& operator+=(const ResourceSet& other);
  ResourceSet& operator-=(const ResourceSet& other);
  ResourceSet operator*(int count) const;
  friend bool operator==(const ResourceSet&, const ResourceSet&) = default;
};

// "2 CPUs, 1 GPUs, 512 MiB memory", as the scheduler's messages say it.
std::string describe(const ResourceSet& resources);

// A node as the scheduler sees it.
struct NodeRoom {
  ResourceSet free;
  std::vector<bool> gpu_used;  // by device index
  // False when the node declared no memory (--memory 0): memory is then
  // neither held nor checked there.
  bool memory_counted = true;
};
// By node id; ties go to the first id.
using Rooms = std::map<std::string, NodeRoom>;

// Whether an instance that holds `need` fits in `room`. The CPU count has a
// little slack: fractional CPUs added and subtracted do not sum exactly
// (0.1 + 0.2 > 0.3).
bool fits(const ResourceSet& need, const NodeRoom& room);

// What one instance holds on its node, to give back when its job ends: for
// an instance whose operator set no resources, nothing.
struct Hold {
  std::string node_id;
  ResourceSet held;       // held.gpus == gpus.size()
  std::vector<int> gpus;  // device indices on the node
};

// Where every instance of a job goes, or the instance that found no room.
struct Assignment {
  std::vector<Hold> holds;  // one per instance, in task order (chains, then instances)
  // Empty when every instance has a place; else "2 CPUs, 0 GPUs, 0 MiB memory
  // for an instance of 'map'".
  std::string stuck;
  bool placed() const { return stuck.empty(); }
};

// Places every instance of `request` in `rooms`. First it spreads: each
// instance in task order on the node with the fewest of the job's instances,
// then the most free CPU. Where that leaves an instance without room, it
// packs: the instances that hold resources largest first (GPUs, CPUs,
// memory), each on the fitting node with the least free CPU (best fit), then
// the others. When neither works, says which instance spreading left out.
Assignment assign(const rpc::SubmitRequest& request, const Rooms& rooms);

// Why `request` could never run on the nodes in `idle` (each as it is with
// nothing running: its total free), or nullopt when it could once the other
// jobs end. Also nullopt when there are no nodes: the job waits for them.
std::optional<std::string> never_fits(const rpc::SubmitRequest& request, const Rooms& idle);

// The task processes of a job placed by `holds` (in task order: the chains
// of `request`, then their instances). A node runs up to
// request.processes_per_node() of them (0 counts as 1): the instances of
// each chain on a node are dealt over its processes in turn, the k-th to
// process k mod N, so that a node runs as many processes as its most
// numerous chain has instances there, at most N, and none without a task.
// Processes are numbered in the order they are first used. REQUIRES: one
// hold per instance of `request`, as assign() gives them.
struct ProcessLayout {
  struct Process {
    std::string node_id;
    std::vector<int> gpus;           // device indices, CUDA_VISIBLE_DEVICES order
    std::uint64_t memory_bytes = 0;  // the sum its instances hold: its limit
  };
  std::vector<Process> processes;
  std::vector<int> process_of_task;
  // Per task, its GPUs as CUDA numbers them inside its process.
  std::vector<std::vector<int>> gpus_of_task;
};
ProcessLayout lay_out_processes(const std::vector<Hold>& holds, const rpc::SubmitRequest& request);

}  // namespace sage::cluster
