// DataStream<T>: a stream of records of type T in the dataflow being built,
// and the transformations that extend it. Nothing runs until the environment
// submits the job. Every function argument is either a callable or, with the
// class named as template argument, a class constructed once per parallel
// instance from the given constructor arguments:
//
//   stream.map([](int x) { return x * 2; }, {.name = "double", .parallelism = 4});
//   stream.map<DistributedProcessor>(sage::Options{.parallelism = 4}, "tag");
//
// Record types must be Serializable (see serialization.hpp): the same program
// may run across processes, where every record crosses the network.
#pragma once

#include <concepts>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sage/detail/logical_graph.hpp"
#include "sage/detail/operators.hpp"
#include "sage/detail/stream_building.hpp"
#include "sage/detail/transformations.hpp"
#include "sage/functions.hpp"
#include "sage/options.hpp"
#include "sage/runtime_context.hpp"
#include "sage/serialization.hpp"

namespace sage {

template <class T>
class DataStream;
template <class T, class KeyFn>
class KeyedStream;
template <class A, class B>
class ConnectedStreams;
template <class A, class B, class KeyFnA, class KeyFnB>
class KeyedConnectedStreams;

template <class T>
class DataStream : public detail::Transformations<T, DataStream<T>> {
 public:
  using value_type = T;

  DataStream(std::shared_ptr<detail::LogicalGraph> graph, std::vector<detail::StreamInput> inputs)
      : graph_(std::move(graph)), inputs_(std::move(inputs)) {
    detail::check_record_type<T>();
  }

  // Records with equal keys reach the same instance of the next operator, in
  // every process; that operator gets keyed state. The key must be Serializable
  // and comparable with ==.
  template <class KeyFn>
  KeyedStream<T, KeyFn> key_by(KeyFn key_fn) const {
    using K = std::remove_cvref_t<std::invoke_result_t<KeyFn&, const T&>>;
    static_assert(Serializable<K>, "sage: key_by keys must be Serializable");
    static_assert(std::equality_comparable<K>, "sage: key_by keys must be comparable with ==");
    return KeyedStream<T, KeyFn>(
        graph_,
        with_partitioning(detail::Partitioning::kHash,
                          std::make_shared<const detail::KeyedEdgeFactory<T, KeyFn>>(key_fn)),
        std::move(key_fn));
  }

  // Round robin over the instances of the next operator.
  DataStream rebalance() const {
    return {graph_, with_partitioning(detail::Partitioning::kRebalance)};
  }
  // Every record to every instance of the next operator.
  DataStream broadcast() const {
    return {graph_, with_partitioning(detail::Partitioning::kBroadcast)};
  }
  // Instance i to instance i; the next operator must have the same parallelism.
  DataStream forward() const { return {graph_, with_partitioning(detail::Partitioning::kForward)}; }

  // The partitioner's partition(record, num_partitions) (or the callable
  // itself) picks the instance of the next operator; `parallelism` is that
  // operator's parallelism unless its options say otherwise. An index outside
  // [0, num_partitions) fails the job.
  template <class P>
  DataStream partition_custom(P partitioner, std::optional<int> parallelism = std::nullopt) const {
    static_assert(detail::Callable_partition<P, const T&, int>,
                  "sage: a partitioner must have partition(const T&, int num_partitions) or be "
                  "callable with (record, num_partitions)");
    DataStream result(graph_,
                      with_partitioning(detail::Partitioning::kCustom,
                                        std::make_shared<const detail::CustomEdgeFactory<T, P>>(
                                            std::move(partitioner))));
    result.default_parallelism_ = parallelism;
    return result;
  }

  // The records of this stream and of `others` (same type) as one stream.
  template <class... Others>
  DataStream union_with(const Others&... others) const {
    static_assert((std::is_same_v<Others, DataStream> && ...),
                  "sage: union_with takes streams of the same record type");
    DataStream result = *this;
    (result.append_inputs(others), ...);
    return result;
  }

  // Pairs this stream with another, of any type, for comap.
  template <class B>
  ConnectedStreams<T, B> connect(const DataStream<B>& other) const {
    detail::require_same_graph(*graph_, *other.graph_);
    return ConnectedStreams<T, B>(graph_, inputs_, other.inputs_);
  }

  // Used by Transformations.
  detail::Unkeyed key_policy() const { return {}; }
  template <class Out, class MakeOperator>
  DataStream<Out> attach(const std::string& kind, Options options, MakeOperator make) const {
    return DataStream<Out>(
        graph_, detail::attach_operator<Out>(*graph_, kind, options, default_parallelism_, false,
                                             {inputs_}, std::move(make)));
  }

 private:
  template <class U>
  friend class DataStream;
  template <class U, class KeyFn>
  friend class KeyedStream;

  std::vector<detail::StreamInput> with_partitioning(
      detail::Partitioning p, std::shared_ptr<const detail::EdgeFactory> edge = nullptr) const {
    auto inputs = inputs_;
    for (auto& input : inputs) {
      input.partitioning = p;
      input.edge = edge ? edge : detail::default_edge<T>();
    }
    return inputs;
  }
  void append_inputs(const DataStream& other) {
    detail::require_same_graph(*graph_, *other.graph_);
    inputs_.insert(inputs_.end(), other.inputs_.begin(), other.inputs_.end());
  }

  std::shared_ptr<detail::LogicalGraph> graph_;
  std::vector<detail::StreamInput> inputs_;
  std::optional<int> default_parallelism_;
};

// A stream partitioned by key. The operator applied to it is keyed: it sees
// RuntimeContext::current_key() and keyed state.
template <class T, class KeyFn>
class KeyedStream : public detail::Transformations<T, KeyedStream<T, KeyFn>> {
 public:
  using key_type = std::remove_cvref_t<std::invoke_result_t<KeyFn&, const T&>>;

  KeyedStream(std::shared_ptr<detail::LogicalGraph> graph, std::vector<detail::StreamInput> inputs,
              KeyFn key_fn)
      : graph_(std::move(graph)), inputs_(std::move(inputs)), key_fn_(std::move(key_fn)) {}

  // A running aggregate per key: emits reduce(previous, record) for every
  // record (the first record of a key is emitted as it is).
  template <class F>
  DataStream<T> reduce(F f, Options options = {}) const {
    if (options.name.empty()) options.name = "reduce";
    return this->template map<Reducer<F>>(std::move(options), std::move(f));
  }

  // Pairs two keyed streams with the same key type for a keyed comap or join.
  template <class B, class KeyFnB>
  KeyedConnectedStreams<T, B, KeyFn, KeyFnB> connect(const KeyedStream<B, KeyFnB>& other) const {
    static_assert(std::is_same_v<key_type, typename KeyedStream<B, KeyFnB>::key_type>,
                  "sage: connected keyed streams must have the same key type");
    detail::require_same_graph(*graph_, *other.graph_);
    return KeyedConnectedStreams<T, B, KeyFn, KeyFnB>(graph_, inputs_, other.inputs_, key_fn_,
                                                      other.key_fn_);
  }

  // Used by Transformations.
  detail::Keyed<key_type, KeyFn> key_policy() const {
    return detail::Keyed<key_type, KeyFn>(key_fn_);
  }
  template <class Out, class MakeOperator>
  DataStream<Out> attach(const std::string& kind, Options options, MakeOperator make) const {
    return DataStream<Out>(
        graph_, detail::attach_operator<Out>(*graph_, kind, options, std::nullopt, true, {inputs_},
                                             std::move(make)));
  }

 private:
  template <class U, class K>
  friend class KeyedStream;

  template <class F>
  class Reducer {
   public:
    explicit Reducer(F f) : f_(std::move(f)) {}
    void open(RuntimeContext& ctx) { acc_.emplace(ctx.value_state<T>("sage.reduce")); }
    T map(const T& record) {
      if (!acc_->has_value()) {
        acc_->update(record);
        return record;
      }
      T& acc = acc_->get_or_init();
      acc = f_(std::as_const(acc), record);
      return acc;
    }

   private:
    F f_;
    std::optional<ValueState<T>> acc_;
  };

  std::shared_ptr<detail::LogicalGraph> graph_;
  std::vector<detail::StreamInput> inputs_;
  KeyFn key_fn_;
};

// Two streams of possibly different types, processed by one operator.
template <class A, class B>
class ConnectedStreams {
 public:
  ConnectedStreams(std::shared_ptr<detail::LogicalGraph> graph, std::vector<detail::StreamInput> a,
                   std::vector<detail::StreamInput> b)
      : graph_(std::move(graph)), first_(std::move(a)), second_(std::move(b)) {}

  // map1 for records of the first stream, map2 for the second; same output type.
  template <class F1, class F2>
  auto comap(F1 map1, F2 map2, Options options = {}) const {
    return comap_with(
        detail::copy_maker(detail::CoMapPair<F1, F2>{std::move(map1), std::move(map2)}),
        std::move(options));
  }
  // A class with map1(const A&) and map2(const B&).
  template <class C, class... Args>
  auto comap(Args&&... args) const requires std::constructible_from<C, Args...> {
    return comap_with(detail::class_maker<C>(std::forward<Args>(args)...), {});
  }
  template <class C, class... Args>
  auto comap(Options options, Args&&... args) const requires std::constructible_from<C, Args...> {
    return comap_with(detail::class_maker<C>(std::forward<Args>(args)...), std::move(options));
  }

 private:
  template <class Make>
  auto comap_with(Make make, Options options) const {
    using F = detail::Made<Make>;
    detail::check_comap<F, A, B>();
    using Out = detail::CoMapResult<F, A, B>;
    using Logic = detail::CoMapLogic<F>;
    return DataStream<Out>(
        graph_,
        detail::attach_operator<Out>(
            *graph_, "comap", options, std::nullopt, false, {first_, second_},
            [make](detail::OperatorSetup& s) {
              return std::make_unique<detail::TwoInputOperator<A, B, Out, Logic, detail::Unkeyed>>(
                  [&make] { return Logic{make()}; }, detail::Unkeyed{}, s);
            }));
  }

  std::shared_ptr<detail::LogicalGraph> graph_;
  std::vector<detail::StreamInput> first_, second_;
};

// Two keyed streams with the same key type: comap with shared keyed state per
// key, or join.
template <class A, class B, class KeyFnA, class KeyFnB>
class KeyedConnectedStreams {
 public:
  using key_type = std::remove_cvref_t<std::invoke_result_t<KeyFnA&, const A&>>;

  KeyedConnectedStreams(std::shared_ptr<detail::LogicalGraph> graph,
                        std::vector<detail::StreamInput> a, std::vector<detail::StreamInput> b,
                        KeyFnA key_a, KeyFnB key_b)
      : graph_(std::move(graph)),
        first_(std::move(a)),
        second_(std::move(b)),
        key_a_(std::move(key_a)),
        key_b_(std::move(key_b)) {}

  template <class F1, class F2>
  auto comap(F1 map1, F2 map2, Options options = {}) const {
    return comap_with(
        detail::copy_maker(detail::CoMapPair<F1, F2>{std::move(map1), std::move(map2)}),
        std::move(options));
  }
  template <class C, class... Args>
  auto comap(Options options, Args&&... args) const requires std::constructible_from<C, Args...> {
    return comap_with(detail::class_maker<C>(std::forward<Args>(args)...), std::move(options));
  }
  template <class C, class... Args>
  auto comap(Args&&... args) const requires std::constructible_from<C, Args...> {
    return comap_with(detail::class_maker<C>(std::forward<Args>(args)...), {});
  }

  // Emits join(a, b) for every pair of records with equal keys, whichever
  // arrives first. Both inputs are kept in keyed state.
  template <class F>
  auto join(F f, Options options = {}) const {
    using R = std::remove_cvref_t<std::invoke_result_t<F&, const A&, const B&>>;
    using Logic = detail::JoinLogic<A, B, F>;
    if (options.name.empty()) options.name = "join";
    return attach<R, Logic>("join", std::move(options), [f = std::move(f)] {
      return Logic{f, std::nullopt, std::nullopt};
    });
  }

 private:
  using KeyPolicy = detail::KeyedPair<key_type, KeyFnA, KeyFnB>;

  template <class Make>
  auto comap_with(Make make, Options options) const {
    using F = detail::Made<Make>;
    detail::check_comap<F, A, B>();
    using Logic = detail::CoMapLogic<F>;
    return attach<detail::CoMapResult<F, A, B>, Logic>("comap", std::move(options),
                                                       [make] { return Logic{make()}; });
  }

  template <class Out, class Logic, class MakeLogic>
  DataStream<Out> attach(const char* kind, Options options, MakeLogic make_logic) const {
    auto first = first_, second = second_;
    for (auto& in : first) {
      in.partitioning = detail::Partitioning::kHash;
      in.edge = std::make_shared<const detail::KeyedEdgeFactory<A, KeyFnA>>(key_a_);
    }
    for (auto& in : second) {
      in.partitioning = detail::Partitioning::kHash;
      in.edge = std::make_shared<const detail::KeyedEdgeFactory<B, KeyFnB>>(key_b_);
    }
    return DataStream<Out>(
        graph_,
        detail::attach_operator<Out>(
            *graph_, kind, options, std::nullopt, true, {first, second},
            [make_logic, key = KeyPolicy(key_a_, key_b_)](detail::OperatorSetup& s) {
              return std::make_unique<detail::TwoInputOperator<A, B, Out, Logic, KeyPolicy>>(
                  make_logic, key, s);
            }));
  }

  std::shared_ptr<detail::LogicalGraph> graph_;
  std::vector<detail::StreamInput> first_, second_;
  KeyFnA key_a_;
  KeyFnB key_b_;
};

}  // namespace sage
