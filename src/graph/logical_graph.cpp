#include <string>

#include "sage/data_stream.hpp"

namespace sage::detail {

const char* to_string(Partitioning p) {
  switch (p) {
    case Partitioning::kDefault:
      return "default";
    case Partitioning::kForward:
      return "forward";
    case Partitioning::kRebalance:
      return "rebalance";
    case Partitioning::kHash:
      return "hash";
    case Partitioning::kBroadcast:
      return "broadcast";
    case Partitioning::kCustom:
      return "custom";
  }
  return "unknown";
}

int add_operator(LogicalGraph& graph, const std::string& kind, const Options& options,
                 std::optional<int> default_parallelism, bool keyed,
                 const std::vector<std::vector<StreamInput>>& inputs,
                 std::shared_ptr<const OperatorFactory> factory) {
  graph.require_open();
  LogicalNode node;
  node.id = static_cast<int>(graph.nodes.size());
  node.kind = kind;
  node.name = options.name.empty() ? kind + "-" + std::to_string(node.id) : options.name;
  node.num_inputs = static_cast<int>(inputs.size());
  node.keyed = keyed;
  node.factory = std::move(factory);
  node.resources = options.resources.value_or(Resources{});
  node.reserves_resources = options.resources.has_value();
  node.resources.validate(node.name);

  int widest_input = 1;
  for (const auto& input : inputs) {
    for (const auto& in : input) {
      widest_input = std::max(widest_input, graph.nodes[in.node].parallelism);
    }
  }
  if (options.parallelism && default_parallelism && kind != "source" &&
      *options.parallelism != *default_parallelism) {
    throw InvalidPlanError("operator '" + node.name + "' asks for parallelism " +
                           std::to_string(*options.parallelism) + " but partition_custom(..., " +
                           std::to_string(*default_parallelism) + ") before it set " +
                           std::to_string(*default_parallelism) + "; give one value");
  }
  node.parallelism = options.parallelism.value_or(default_parallelism.value_or(widest_input));
  if (node.parallelism < 1) {
    throw InvalidPlanError("operator '" + node.name + "': parallelism must be at least 1, got " +
                           std::to_string(node.parallelism));
  }

  for (std::size_t index = 0; index < inputs.size(); ++index) {
    for (const auto& in : inputs[index]) {
      graph.edges.push_back(
          LogicalEdge{in.node, node.id, static_cast<int>(index), in.partitioning, in.edge});
    }
  }
  graph.nodes.push_back(std::move(node));
  return graph.nodes.back().id;
}

}  // namespace sage::detail
