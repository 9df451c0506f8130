#include "runtime/task_builder.hpp"

#include <map>

namespace sage::runtime {

Task build_task(const TaskContext& context, int chain_id, int instance, InputQueue* queue) {
  const auto& graph = *context.graph;
  const auto& plan = *context.plan;
  const auto& chain = plan.chains()[chain_id];

  Task task;
  task.chain = chain_id;
  task.instance = instance;
  task.queue = queue;
  task.is_source = chain.is_source;
  // Built tail first, so that every operator's chained successors exist
  // before it; node ids are topological.
  std::map<int, detail::Operator*> built;
  std::vector<std::unique_ptr<detail::Operator>> reversed;
  for (auto it = chain.nodes.rbegin(); it != chain.nodes.rend(); ++it) {
    const auto& node = graph.nodes[*it];
    detail::OperatorSetup setup;
    setup.identity = RuntimeContext::Identity{
        context.job_id,  node.name,
        instance,        node.parallelism,
        context.node_id, context.gpus ? context.gpus(chain_id, instance) : std::vector<int>{}};
    setup.config = context.config;
    setup.metrics = &context.metrics(node.id, instance);
    setup.waker = queue;
    setup.stop_requested = context.stop_requested;
    for (std::size_t e = 0; e < graph.edges.size(); ++e) {
      const auto& edge = graph.edges[e];
      if (edge.from != node.id) continue;
      if (plan.is_chained(static_cast<int>(e))) {
        setup.outputs.push_back(&built.at(edge.to)->input(edge.input_index));
        continue;
      }
      detail::WriterSetup writer;
      writer.batch_size = context.config->batch_size;
      writer.producer_metrics = setup.metrics;
      writer.blame =
          detail::OperatorError{node.name, instance, node.parallelism, context.node_id, ""};
      const int consumer_chain = plan.chain_of(edge.to);
      for (int consumer : plan.consumer_instances(static_cast<int>(e), instance)) {
        writer.targets.push_back(
            detail::ChannelTarget{&context.sink(consumer_chain, consumer),
                                  plan.channel_index(static_cast<int>(e), instance, consumer)});
      }
      auto created =
          edge.factory->create_writer(std::move(writer), plan.partitioning(static_cast<int>(e)),
                                      instance, context.config->max_parallelism);
      setup.outputs.push_back(created.receiver);
      task.writers.push_back(std::move(created.writer));
    }
    auto op = node.factory->create(setup);
    built[node.id] = op.get();
    reversed.push_back(std::move(op));
    if (it + 1 == chain.nodes.rend()) {
      task.name = setup.identity.operator_name + "[" + std::to_string(instance) + "/" +
                  std::to_string(node.parallelism) + "]";
    }
  }
  task.operators.assign(std::make_move_iterator(reversed.rbegin()),
                        std::make_move_iterator(reversed.rend()));

  auto& head = *task.operators.front();
  for (const auto& channel : plan.input_channels(chain_id, instance)) {
    const auto& edge = graph.edges[channel.edge];
    task.channels.push_back(
        Task::ChannelEnd{&edge.factory->input_adapter(), &head.input(edge.input_index)});
  }
  return task;
}

}  // namespace sage::runtime
