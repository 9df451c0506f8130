// How the public stream classes append an operator to the logical graph: the
// inputs it reads, the factory of its instances, the makers of the user's
// function per instance, and the check every record type must pass.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "sage/detail/logical_graph.hpp"
#include "sage/options.hpp"
#include "sage/serialization.hpp"

namespace sage::detail {

// One upstream operator feeding the next operator, and how.
struct StreamInput {
  int node = 0;
  Partitioning partitioning = Partitioning::kDefault;
  std::shared_ptr<const EdgeFactory> edge;
};

template <class T>
std::shared_ptr<const EdgeFactory> default_edge() {
  static const auto edge = std::make_shared<const TypedEdgeFactory<T>>();
  return edge;
}

// Adds an operator fed by inputs[i] on its input i and returns its id. Applies
// the defaults of Options and validates them. Defined in src/graph.
int add_operator(LogicalGraph& graph, const std::string& kind, const Options& options,
                 std::optional<int> default_parallelism, bool keyed,
                 const std::vector<std::vector<StreamInput>>& inputs,
                 std::shared_ptr<const OperatorFactory> factory);

template <class Make>
std::shared_ptr<const OperatorFactory> operator_factory(Make make) {
  return std::make_shared<const CallableOperatorFactory<Make>>(std::move(make));
}

// Adds an operator whose instances `make_operator(OperatorSetup&)` creates,
// as add_operator does, and returns the input through which the next operator
// reads its records of type Out.
template <class Out, class MakeOperator>
std::vector<StreamInput> attach_operator(LogicalGraph& graph, const std::string& kind,
                                         const Options& options,
                                         std::optional<int> default_parallelism, bool keyed,
                                         const std::vector<std::vector<StreamInput>>& inputs,
                                         MakeOperator make_operator) {
  const int id = add_operator(graph, kind, options, default_parallelism, keyed, inputs,
                              operator_factory(std::move(make_operator)));
  return {StreamInput{id, Partitioning::kDefault, default_edge<Out>()}};
}

// Makers build a user function per instance: a copy of a callable, or a class
// constructed from copies of the constructor arguments.
template <class F>
auto copy_maker(F f) {
  return [f = std::move(f)]() { return f; };
}
template <class C, class... Args>
auto class_maker(Args&&... args) {
  return [args = std::make_tuple(std::decay_t<Args>(std::forward<Args>(args))...)]() {
    return std::make_from_tuple<C>(args);
  };
}
template <class Make>
using Made = std::invoke_result_t<const Make&>;

template <class T>
constexpr void check_record_type() {
  static_assert(Serializable<T>,
                "sage: this record type cannot cross processes. Add SAGE_FIELDS(field1, "
                "field2, ...) inside the struct, or specialize sage::Serializer<T> (see "
                "docs/serialization.md)");
  static_assert(std::is_copy_constructible_v<T>, "sage: records must be copyable");
}

}  // namespace sage::detail
