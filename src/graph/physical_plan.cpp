#include "graph/physical_plan.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "sage/stable_hash.hpp"

namespace sage::graph {
namespace {

Partitioning resolve(const detail::LogicalEdge& edge, const detail::LogicalGraph& graph) {
  const auto& from = graph.nodes[edge.from];
  const auto& to = graph.nodes[edge.to];
  if (edge.partitioning == Partitioning::kDefault) {
    return from.parallelism == to.parallelism ? Partitioning::kForward : Partitioning::kRebalance;
  }
  if (edge.partitioning == Partitioning::kForward && from.parallelism != to.parallelism) {
    throw InvalidPlanError("forward() from '" + from.name + "' (parallelism " +
                           std::to_string(from.parallelism) + ") to '" + to.name +
                           "' (parallelism " + std::to_string(to.parallelism) +
                           "): forward needs equal parallelism; use rebalance() or give both "
                           "the same parallelism");
  }
  return edge.partitioning;
}

std::string describe_for_fingerprint(const detail::LogicalGraph& graph,
                                     const std::vector<Partitioning>& partitioning,
                                     const ExecutionConfig& config) {
  std::ostringstream out;
  out << "max_parallelism=" << config.max_parallelism << '\n';
  for (const auto& n : graph.nodes) {
    out << "node " << n.id << ' ' << n.kind << ' ' << n.name << ' ' << n.parallelism << ' '
        << n.num_inputs << ' ' << n.keyed << ' ' << n.resources.num_cpus << ' '
        << n.resources.memory << ' ' << n.resources.num_gpus << ' ' << n.reserves_resources << '\n';
  }
  for (std::size_t e = 0; e < graph.edges.size(); ++e) {
    const auto& edge = graph.edges[e];
    out << "edge " << edge.from << ' ' << edge.to << ' ' << edge.input_index << ' '
        << detail::to_string(partitioning[e]) << ' ' << edge.factory->record_type() << '\n';
  }
  return out.str();
}

}  // namespace

PhysicalPlan PhysicalPlan::build(const detail::LogicalGraph& graph, const ExecutionConfig& config) {
  config.validate();
  if (graph.nodes.empty()) {
    throw InvalidPlanError("job '" + graph.job_name +
                           "' has no operators; add a source (from_collection, from_source, "
                           "from_batch) and a sink before submitting");
  }
  if (config.checkpoint_interval.count() > 0) {
    for (const auto& node : graph.nodes) {
      if (node.replayable) continue;
      const std::string how =
          node.how_to_replay.empty()
              ? "give its class save_state(sage::Writer&) and restore_state(sage::Reader&) for "
                "its position (docs/fault-tolerance.md)"
              : node.how_to_replay;
      throw InvalidPlanError("source '" + node.name +
                             "' cannot replay its records after a failure, and the job has "
                             "checkpoints on; " +
                             how + ", or set checkpoint_interval to 0");
    }
  }
  PhysicalPlan plan;
  plan.graph_ = &graph;
  const auto node_count = graph.nodes.size();
  plan.edge_partitioning_.resize(graph.edges.size());
  plan.edge_chained_.assign(graph.edges.size(), false);
  std::vector<int> input_edges(node_count, 0);
  for (const auto& edge : graph.edges) ++input_edges[edge.to];

  for (std::size_t e = 0; e < graph.edges.size(); ++e) {
    const auto& edge = graph.edges[e];
    plan.edge_partitioning_[e] = resolve(edge, graph);
    const auto& from = graph.nodes[edge.from];
    const auto& to = graph.nodes[edge.to];
    if (to.keyed && to.parallelism > config.max_parallelism) {
      throw InvalidPlanError("keyed operator '" + to.name + "' has parallelism " +
                             std::to_string(to.parallelism) + " but max_parallelism is " +
                             std::to_string(config.max_parallelism) +
                             "; raise ExecutionConfig::max_parallelism or lower the parallelism");
    }
    plan.edge_chained_[e] = plan.edge_partitioning_[e] == Partitioning::kForward &&
                            from.parallelism == to.parallelism && to.num_inputs == 1 &&
                            input_edges[edge.to] == 1 && from.resources == to.resources &&
                            from.reserves_resources == to.reserves_resources;
  }

  // Node ids are topological (an operator is added after its inputs), so one
  // pass in id order assigns every chained node to its producer's chain.
  plan.chain_of_node_.assign(node_count, -1);
  for (const auto& node : graph.nodes) {
    int chain = -1;
    for (std::size_t e = 0; e < graph.edges.size(); ++e) {
      if (graph.edges[e].to == node.id && plan.edge_chained_[e]) {
        chain = plan.chain_of_node_[graph.edges[e].from];
      }
    }
    if (chain < 0) {
      chain = static_cast<int>(plan.chains_.size());
      plan.chains_.push_back(Chain{chain, {}, node.parallelism, node.num_inputs == 0});
    }
    plan.chains_[chain].nodes.push_back(node.id);
    plan.chain_of_node_[node.id] = chain;
  }

  const std::string text = describe_for_fingerprint(graph, plan.edge_partitioning_, config);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx",
                static_cast<unsigned long long>(stable_hash_bytes(text.data(), text.size())));
  plan.fingerprint_ = hex;
  return plan;
}

std::vector<int> PhysicalPlan::consumer_instances(int edge, int producer_instance) const {
  const int consumers = graph_->nodes[graph_->edges[edge].to].parallelism;
  if (edge_partitioning_[edge] == Partitioning::kForward) return {producer_instance};
  std::vector<int> all(consumers);
  for (int c = 0; c < consumers; ++c) all[c] = c;
  return all;
}

std::vector<InputChannel> PhysicalPlan::input_channels(int chain, int instance) const {
  std::vector<InputChannel> channels;
  const int head = chains_[chain].nodes.front();
  for (std::size_t e = 0; e < graph_->edges.size(); ++e) {
    const auto& edge = graph_->edges[e];
    if (edge.to != head || edge_chained_[e]) continue;
    const int producers = graph_->nodes[edge.from].parallelism;
    for (int p = 0; p < producers; ++p) {
      if (edge_partitioning_[e] == Partitioning::kForward && p != instance) continue;
      channels.push_back(InputChannel{static_cast<int>(e), p});
    }
  }
  return channels;
}

std::uint32_t PhysicalPlan::channel_index(int edge, int producer_instance,
                                          int consumer_instance) const {
  const auto channels = input_channels(chain_of_node_[graph_->edges[edge].to], consumer_instance);
  const auto it = std::find_if(channels.begin(), channels.end(), [&](const InputChannel& c) {
    return c.edge == edge && c.producer_instance == producer_instance;
  });
  return static_cast<std::uint32_t>(it - channels.begin());
}

}  // namespace sage::graph
