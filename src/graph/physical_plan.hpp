// The physical plan: the logical graph expanded for execution. Operators
// joined by forward edges of equal parallelism are chained (one thread, direct
// calls); every other edge becomes channels, one per (producer instance,
// consumer instance) pair that exchange records. The plan is deterministic:
// every process that builds the same graph gets the same plan and fingerprint.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sage/detail/logical_graph.hpp"
#include "sage/options.hpp"

namespace sage::graph {

using detail::Partitioning;

// Operators that run together in one thread per parallel instance.
struct Chain {
  int id = 0;
  std::vector<int> nodes;  // topological order; nodes[0] is the head
  int parallelism = 1;
  bool is_source = false;  // the head is a source
};

// One channel into a consumer instance: which edge and which producer instance.
// Its position in PhysicalPlan::input_channels() is its channel index.
struct InputChannel {
  int edge = 0;
  int producer_instance = 0;
};

class PhysicalPlan {
 public:
  // Throws InvalidPlanError for a graph that cannot run (no operators, a
  // forward edge between different parallelisms, a keyed operator wider than
  // max_parallelism, a source that cannot replay in a job with checkpoints...).
  static PhysicalPlan build(const detail::LogicalGraph& graph, const ExecutionConfig& config);

  const std::vector<Chain>& chains() const { return chains_; }
  int chain_of(int node) const { return chain_of_node_[node]; }
  bool is_chained(int edge) const { return edge_chained_[edge]; }
  // The edge's partitioning, with kDefault resolved to forward or rebalance.
  Partitioning partitioning(int edge) const { return edge_partitioning_[edge]; }

  // The channels that feed instance `instance` of `chain`, in channel-index order.
  std::vector<InputChannel> input_channels(int chain, int instance) const;
  // The consumer instances that producer instance `producer_instance` of the
  // unchained `edge` sends to, in target order.
  std::vector<int> consumer_instances(int edge, int producer_instance) const;
  // Index of the channel (edge, producer_instance) at `consumer_instance`.
  std::uint32_t channel_index(int edge, int producer_instance, int consumer_instance) const;

  // A hash of everything that determines how records flow; equal in every
  // process that built the same dataflow with the same config.
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  const detail::LogicalGraph* graph_ = nullptr;
  std::vector<Chain> chains_;
  std::vector<int> chain_of_node_;
  std::vector<bool> edge_chained_;
  std::vector<Partitioning> edge_partitioning_;
  std::string fingerprint_;
};

}  // namespace sage::graph
