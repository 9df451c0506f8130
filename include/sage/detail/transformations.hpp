// The transformations DataStream and KeyedStream share (map, map_async,
// filter, flat_map, sink, print, write_text), and what comap needs to type a pair of functions.
// Each turns the user's function into a maker and an operator template
// instantiated with its concrete type, so the per-record loop inlines it.
#pragma once

#include <concepts>
#include <filesystem>
#include <functional>
#include <memory>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>

#include "sage/async_function.hpp"
#include "sage/detail/async_operator.hpp"
#include "sage/detail/operators.hpp"
#include "sage/detail/print.hpp"
#include "sage/detail/stream_building.hpp"
#include "sage/detail/text_file_sink.hpp"
#include "sage/error.hpp"
#include "sage/functions.hpp"
#include "sage/options.hpp"

namespace sage {

template <class T>
class DataStream;

namespace detail {

// Output type of a flat_map function over In: ExplicitOut unless void, else
// the T of its Collector<T>& parameter, or the element type of the range it
// returns. A named output type is taken as it is: deducing it from a generic
// lambda would fail.
template <class ExplicitOut, class F, class In>
auto flat_map_output() {
  using FromCollector = typename decltype(deduce_collector_output<F>())::type;
  if constexpr (!std::is_void_v<ExplicitOut>) {
    return std::type_identity<ExplicitOut>{};
  } else if constexpr (!std::is_void_v<FromCollector>) {
    return std::type_identity<FromCollector>{};
  } else if constexpr (requires(F & f, In & x) { call_flat_map(f, x); }) {
    using R = std::remove_cvref_t<decltype(call_flat_map(std::declval<F&>(), std::declval<In&>()))>;
    static_assert(std::ranges::range<R>,
                  "sage: a flat_map function must take (record, sage::Collector<Out>&) or "
                  "return a range of outputs");
    return std::type_identity<std::ranges::range_value_t<R>>{};
  } else {
    static_assert(sizeof(F) == 0,
                  "sage: cannot tell the output type of this flat_map function (a generic "
                  "lambda?); name it: flat_map<Out>(fn)");
  }
}

// A flat_map function that emits through a Collector<Out>& it is given.
template <class F, class In, class Out>
concept TakesCollector = requires(F& f, In& record, Collector<Out>& out) {
  std::invoke(f, record, out);
};

// A flat_map class that can be built from Args.
template <class C, class... Args>
concept FlatMapClass = std::constructible_from<C, Args...> && HasFlatMapMember<C>;

// The transformations shared by DataStream and KeyedStream. Self supplies
// key_policy() (how the operator sets the current key) and attach<Out>(),
// which adds the operator and returns the stream of its output.
//
// Each transformation takes a callable, or a class C named as template
// argument and constructed from the arguments. The callable overloads reject
// explicit template arguments (NoExplicitArgs stays empty), so that map<C>(x)
// never takes x for the function. The constraints trail the declarations:
// clang-format keeps them readable there.
template <class T, class Self>
class Transformations {
 public:
  // map: one output record per input record. A class derived from
  // sage::AsyncFunction<T, Out> makes it an asynchronous map (async_function.hpp).
  template <class... NoExplicitArgs, class F>
  auto map(F f, Options options = {}) const requires(sizeof...(NoExplicitArgs) == 0) {
    return map_with(copy_maker(std::move(f)), std::move(options));
  }
  template <class C, class... Args>
  auto map(Args&&... args) const requires std::constructible_from<C, Args...> {
    return map_with(class_maker<C>(std::forward<Args>(args)...), {});
  }
  template <class C, class... Args>
  auto map(Options options, Args&&... args) const requires std::constructible_from<C, Args...> {
    return map_with(class_maker<C>(std::forward<Args>(args)...), std::move(options));
  }

  // map_async: an asynchronous map of a callable f(const T&, AsyncResult<Out>)
  // that starts a call and completes the result later, from any thread
  // (async_function.hpp; map<C> with an AsyncFunction class is the same).
  template <class Out, class F>
  DataStream<Out> map_async(F f, AsyncOptions async = {}, Options options = {})
      const requires std::invocable<F&, const T&, AsyncResult<Out>> {
    try {
      check_async_options(async);
    } catch (const std::invalid_argument& e) {
      throw InvalidPlanError(std::string("map_async: ") + e.what());
    }
    return async_map_with(
        [f = std::move(f), async] { return CallableAsyncFunction<T, Out, F>(f, async); },
        std::move(options));
  }

  // filter: keeps the records for which the function returns true.
  template <class... NoExplicitArgs, class F>
  DataStream<T> filter(F f, Options options = {}) const requires(sizeof...(NoExplicitArgs) == 0) {
    return filter_with(copy_maker(std::move(f)), std::move(options));
  }
  template <class C, class... Args>
  DataStream<T> filter(Args&&... args) const requires std::constructible_from<C, Args...> {
    return filter_with(class_maker<C>(std::forward<Args>(args)...), {});
  }
  template <class C, class... Args>
  DataStream<T> filter(Options options,
                       Args&&... args) const requires std::constructible_from<C, Args...> {
    return filter_with(class_maker<C>(std::forward<Args>(args)...), std::move(options));
  }

  // flat_map: zero or more output records per input record, emitted through a
  // Collector<Out>& argument or returned as a range.
  template <class... NoExplicitArgs, class F>
  auto flat_map(F f, Options options = {}) const requires(sizeof...(NoExplicitArgs) == 0) {
    return flat_map_with<void>(copy_maker(std::move(f)), std::move(options));
  }
  // With the output type named, for a function whose Collector<Out>& cannot be
  // deduced (a generic lambda).
  template <class Out, class F>
  DataStream<Out> flat_map(F f, Options options = {}) const requires TakesCollector<F, T, Out> {
    return flat_map_with<Out>(copy_maker(std::move(f)), std::move(options));
  }
  template <class C, class... Args>
  auto flat_map(Args&&... args) const requires FlatMapClass<C, Args...> {
    return flat_map_with<void>(class_maker<C>(std::forward<Args>(args)...), {});
  }
  template <class C, class... Args>
  auto flat_map(Options options, Args&&... args) const requires FlatMapClass<C, Args...> {
    return flat_map_with<void>(class_maker<C>(std::forward<Args>(args)...), std::move(options));
  }

  // sink: consumes every record; ends this branch of the dataflow.
  template <class... NoExplicitArgs, class F>
  void sink(F f, Options options = {}) const requires(sizeof...(NoExplicitArgs) == 0) {
    sink_with(copy_maker(std::move(f)), std::move(options));
  }
  template <class C, class... Args>
  void sink(Args&&... args) const requires std::constructible_from<C, Args...> {
    sink_with(class_maker<C>(std::forward<Args>(args)...), {});
  }
  template <class C, class... Args>
  void sink(Options options, Args&&... args) const requires std::constructible_from<C, Args...> {
    sink_with(class_maker<C>(std::forward<Args>(args)...), std::move(options));
  }

  // print: writes each record as a line to standard output, after `prefix`.
  void print(std::string prefix = "", Options options = {}) const {
    if (options.name.empty()) options.name = "print";
    sink_with(class_maker<PrintFunction<T>>(std::move(prefix)), std::move(options));
  }

  // write_text: an exactly-once file sink writing each record as a line
  // (operator<<) into part files in `directory`, created if missing; only
  // committed files are visible (text_file_sink.hpp). A relative directory is
  // taken from the current directory of the program that builds the job.
  void write_text(const std::string& directory, Options options = {}) const {
    if (directory.empty()) {
      throw InvalidPlanError("write_text: the directory is empty; give the path to write into");
    }
    if (options.name.empty()) options.name = "write_text";
    self().template attach<T>(
        "sink", std::move(options),
        [directory = std::filesystem::absolute(directory).string(),
         key = self().key_policy()](OperatorSetup& s) {
          // Without checkpoints close() commits; with them, the final checkpoint does.
          const bool checkpointing = s.config->checkpoint_interval.count() > 0;
          const auto make = [&] { return TextFileSink<T>(directory, checkpointing); };
          return std::make_unique<
              SinkOperator<T, TextFileSink<T>, std::remove_cvref_t<decltype(key)>>>(make, key, s);
        });
  }

 private:
  const Self& self() const { return static_cast<const Self&>(*this); }

  template <class Make>
  auto map_with(Make make, Options options) const {
    using F = Made<Make>;
    if constexpr (AsyncFunctionClass<F>) {
      return async_map_with(std::move(make), std::move(options));
    } else {
      using Out = MapResult<F, T>;
      static_assert(!std::is_void_v<Out>, "sage: a map function must return the output record");
      return self().template attach<Out>(
          "map", std::move(options), [make, key = self().key_policy()](OperatorSetup& s) {
            return std::make_unique<MapOperator<T, Out, F, std::remove_cvref_t<decltype(key)>>>(
                make, key, s);
          });
    }
  }
  template <class Make>
  auto async_map_with(Make make, Options options) const {
    using F = Made<Make>;
    static_assert(std::is_same_v<typename F::input_type, T>,
                  "sage: an AsyncFunction<In, Out> must take the stream's record type as In");
    using Out = typename F::output_type;
    return self().template attach<Out>(
        "async_map", std::move(options), [make, key = self().key_policy()](OperatorSetup& s) {
          return std::make_unique<AsyncMapOperator<T, Out, F, std::remove_cvref_t<decltype(key)>>>(
              make, key, s);
        });
  }
  template <class Make>
  DataStream<T> filter_with(Make make, Options options) const {
    using F = Made<Make>;
    static_assert(
        std::is_convertible_v<decltype(call_filter(std::declval<F&>(), std::declval<const T&>())),
                              bool>,
        "sage: a filter function must return bool");
    return self().template attach<T>(
        "filter", std::move(options), [make, key = self().key_policy()](OperatorSetup& s) {
          return std::make_unique<FilterOperator<T, F, std::remove_cvref_t<decltype(key)>>>(make,
                                                                                            key, s);
        });
  }
  template <class ExplicitOut, class Make>
  auto flat_map_with(Make make, Options options) const {
    using F = Made<Make>;
    using Out = typename decltype(flat_map_output<ExplicitOut, F, T>())::type;
    return self().template attach<Out>(
        "flat_map", std::move(options), [make, key = self().key_policy()](OperatorSetup& s) {
          return std::make_unique<FlatMapOperator<T, Out, F, std::remove_cvref_t<decltype(key)>>>(
              make, key, s);
        });
  }
  template <class Make>
  void sink_with(Make make, Options options) const {
    using F = Made<Make>;
    self().template attach<T>(
        "sink", std::move(options), [make, key = self().key_policy()](OperatorSetup& s) {
          return std::make_unique<SinkOperator<T, F, std::remove_cvref_t<decltype(key)>>>(make, key,
                                                                                          s);
        });
  }
};

// comap of connected streams: the output type of map1, which map2 must share.
template <class F, class A, class B>
using CoMapResult =
    std::remove_cvref_t<decltype(call_map1(std::declval<F&>(), std::declval<A&>()))>;

template <class F, class A, class B>
constexpr void check_comap() {
  using Second = std::remove_cvref_t<decltype(call_map2(std::declval<F&>(), std::declval<B&>()))>;
  static_assert(std::is_same_v<CoMapResult<F, A, B>, Second>,
                "sage: map1 and map2 of a comap must return the same type");
}

// A pair of callables used as one comap function.
template <class F1, class F2>
struct CoMapPair {
  F1 first;
  F2 second;
  template <class A>
  auto map1(A& a) {
    return std::invoke(first, a);
  }
  template <class B>
  auto map2(B& b) {
    return std::invoke(second, b);
  }
};

}  // namespace detail
}  // namespace sage
