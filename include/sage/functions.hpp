// How user logic plugs into operators. A function is either a callable
// (lambda, function pointer, functor) or a class with the operator's method
// (map, filter, flat_map, sink, next, partition, map1/map2, join). A class may
// derive from sage::Function to get default open()/close(); either way,
// open(RuntimeContext&) runs once before the instance's first record and
// close() once after its last. Each parallel instance gets its own copy of the
// callable or its own object, so member state needs no locking.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

#include "sage/runtime_context.hpp"
#include "sage/serialization.hpp"

namespace sage {

// Optional base class for function classes.
class Function {
 public:
  virtual ~Function() = default;
  virtual void open(RuntimeContext&) {}
  virtual void close() {}
};

// Receives the records a flat_map (or join, comap) emits. Emitting never
// blocks on a full batch: the batch is handed downstream and collection goes on.
template <class T>
class Collector {
 public:
  using value_type = T;
  Collector(std::vector<T>& buffer, std::size_t flush_at, void (*flush)(void*), void* owner)
      : buffer_(&buffer), flush_at_(flush_at), flush_(flush), owner_(owner) {}

  void collect(T value) {
    buffer_->push_back(std::move(value));
    if (buffer_->size() >= flush_at_) flush_(owner_);
  }
  void operator()(T value) { collect(std::move(value)); }

 private:
  std::vector<T>* buffer_;
  std::size_t flush_at_;
  void (*flush_)(void*);
  void* owner_;
};

namespace detail {

template <class F>
concept HasOpen = requires(F& f, RuntimeContext& ctx) {
  f.open(ctx);
};
template <class F>
concept HasClose = requires(F& f) {
  f.close();
};

// Checkpointed members (docs/fault-tolerance.md): a function that keeps
// state in its own members across failures defines both of
//   void save_state(sage::Writer& out);   // at a checkpoint barrier
//   void restore_state(sage::Reader& in); // after open(), when the job restarts
// (or save_state(sage::Writer&, std::uint64_t checkpoint_id) to know which
// checkpoint it saves for), and may define
//   void notify_checkpoint_complete(std::uint64_t checkpoint_id);
// called once every task has stored checkpoint `checkpoint_id`: the moment
// to make what that checkpoint covers visible (a two-phase commit). It may
// come after the save of a later checkpoint. A source with
// save_state/restore_state is replayable.
template <class F>
concept HasSaveStateWithId = requires(F& f, Writer& w, std::uint64_t id) {
  f.save_state(w, id);
};
template <class F>
concept HasCheckpointedState = requires(F& f, Writer& w, Reader& r) {
  f.restore_state(r);
} && (HasSaveStateWithId<F> || requires(F& f, Writer& w) { f.save_state(w); });

template <class F>
void save_function_state(F& f, Writer& out, std::uint64_t checkpoint_id) {
  if constexpr (HasSaveStateWithId<F>) {
    f.save_state(out, checkpoint_id);
  } else {
    f.save_state(out);
  }
}
template <class F>
concept HasCheckpointNotification = requires(F& f, std::uint64_t id) {
  f.notify_checkpoint_complete(id);
};

template <class F>
void open_function(F& f, RuntimeContext& ctx) {
  if constexpr (HasOpen<F>) f.open(ctx);
}
template <class F>
void close_function(F& f) {
  if constexpr (HasClose<F>) f.close();
}

// Calls the operator's method on a class that has it, else the callable itself.
// Always inlined into the operator's per-record loop: as a call, the loop
// reloaded its vectors' addresses after every record.
#define SAGE_DETAIL_DISPATCH(method)                                                  \
  template <class F, class... A>                                                      \
  concept Has_##method = requires(F & f, A && ... a) {                                \
    f.method(std::forward<A>(a)...);                                                  \
  };                                                                                  \
  template <class F, class... A>                                                      \
  [[gnu::always_inline]] inline decltype(auto) call_##method(F& f, A&&... a) {        \
    if constexpr (Has_##method<F, A...>) {                                            \
      return f.method(std::forward<A>(a)...);                                         \
    } else {                                                                          \
      static_assert(std::is_invocable_v<F&, A...>,                                    \
                    "sage: the function given to " #method                            \
                    "() must be callable with the record, or a class with a " #method \
                    "(record) method");                                               \
      return std::invoke(f, std::forward<A>(a)...);                                   \
    }                                                                                 \
  }                                                                                   \
  template <class F, class... A>                                                      \
  concept Callable_##method = Has_##method<F, A...> || std::is_invocable_v<F&, A...>;

SAGE_DETAIL_DISPATCH(map)
SAGE_DETAIL_DISPATCH(filter)
SAGE_DETAIL_DISPATCH(flat_map)
SAGE_DETAIL_DISPATCH(sink)
SAGE_DETAIL_DISPATCH(next)
SAGE_DETAIL_DISPATCH(partition)
SAGE_DETAIL_DISPATCH(map1)
SAGE_DETAIL_DISPATCH(map2)
SAGE_DETAIL_DISPATCH(join)
#undef SAGE_DETAIL_DISPATCH

template <class F, class In>
using MapResult = std::remove_cvref_t<decltype(call_map(std::declval<F&>(), std::declval<In&>()))>;

// A source that can also hand over many records at once:
// `bool next_batch(std::vector<T>& out, std::size_t max)` appends up to `max`
// records and returns false once the source has ended. The engine then calls
// it instead of next() for every record (no call and no clock check per
// record); it must give the same records next() would.
template <class F, class T>
concept HasNextBatch = requires(F& f, std::vector<T>& out, std::size_t max) {
  { f.next_batch(out, max) } -> std::convertible_to<bool>;
};

// Element type of a source: next() returns std::optional<T>.
template <class F>
using SourceElement =
    typename std::remove_cvref_t<decltype(call_next(std::declval<F&>()))>::value_type;

// The T of a Collector<T>& parameter of a member function or call operator.
template <class M>
struct CollectorArgOf;
template <class C, class R, class A, class T>
struct CollectorArgOf<R (C::*)(A, Collector<T>&)> {
  using type = T;
};
template <class C, class R, class A, class T>
struct CollectorArgOf<R (C::*)(A, Collector<T>&) const> {
  using type = T;
};

template <class F>
concept HasFlatMapMember = requires {
  &F::flat_map;
};
template <class F>
concept HasCallOperator = requires {
  &F::operator();
};

// Output type of a flat_map function that takes a Collector<Out>&, or void
// when it cannot be told (then flat_map<Out>(...) must name it).
template <class F>
auto deduce_collector_output() {
  if constexpr (HasFlatMapMember<F>) {
    return std::type_identity<typename CollectorArgOf<decltype(&F::flat_map)>::type>{};
  } else if constexpr (HasCallOperator<F>) {
    if constexpr (requires { typename CollectorArgOf<decltype(&F::operator())>::type; }) {
      return std::type_identity<typename CollectorArgOf<decltype(&F::operator())>::type>{};
    } else {
      return std::type_identity<void>{};
    }
  } else {
    return std::type_identity<void>{};
  }
}

}  // namespace detail
}  // namespace sage
