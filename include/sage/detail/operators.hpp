// The operator instances that run user functions, one class template per kind
// of operator. They are instantiated with the user's concrete function type, so
// the per-record loop inlines the user's code; the engine sees them only
// through the per-batch interfaces of batch.hpp.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "sage/detail/batch.hpp"
#include "sage/detail/instance_metrics.hpp"
#include "sage/detail/linger_clock.hpp"
#include "sage/functions.hpp"
#include "sage/options.hpp"
#include "sage/runtime_context.hpp"
#include "sage/stable_hash.hpp"
#include "sage/state.hpp"

namespace sage::detail {

// Everything an operator instance is created with.
struct OperatorSetup {
  RuntimeContext::Identity identity;
  const ExecutionConfig* config = nullptr;
  InstanceMetrics* metrics = nullptr;
  // The receivers of the operator's output: chained operators and channel
  // writers. Each must be a BatchReceiver of the operator's output type.
  std::vector<BatchReceiverBase*> outputs;
  // Wakes the instance's task (its input queue); an asynchronous operator's
  // completions use it. Null where nothing waits (a test driving an operator).
  TaskWaker* waker = nullptr;
  // Set when the job is asked to stop (RuntimeContext::stop_requested); may be null.
  const std::atomic<bool>* stop_requested = nullptr;
};

// Runs `body`, turning any exception from user code into an OperatorError
// that names the instance.
template <class Body>
void run_user_code(RuntimeContext& ctx, InstanceMetrics& metrics, Body&& body) {
  try {
    body();
  } catch (const JobCancelledError&) {
    throw;
  } catch (const OperatorError&) {
    throw;
  } catch (const std::exception& e) {
    metrics.add(metrics.errors, 1);
    throw OperatorError{ctx.operator_name(), ctx.parallel_index(), ctx.parallelism(), ctx.node_id(),
                        e.what()};
  } catch (...) {
    metrics.add(metrics.errors, 1);
    throw OperatorError{ctx.operator_name(), ctx.parallel_index(), ctx.parallelism(), ctx.node_id(),
                        "unknown exception (not derived from std::exception)"};
  }
}

// Hands an operator's output batches to every downstream receiver; all but the
// last get a copy, since a receiver may consume the batch.
template <class T>
class Output {
 public:
  explicit Output(const OperatorSetup& setup) : metrics_(setup.metrics) {
    for (auto* t : setup.outputs) targets_.push_back(static_cast<BatchReceiver<T>*>(t));
  }

  void emit(std::vector<T>& batch) {
    if (batch.empty()) return;
    metrics_->add(metrics_->records_out, batch.size());
    for (std::size_t i = 0; i + 1 < targets_.size(); ++i) {
      copy_ = batch;
      targets_[i]->receive(copy_);
    }
    if (!targets_.empty()) targets_.back()->receive(batch);
  }

 private:
  std::vector<BatchReceiver<T>*> targets_;
  std::vector<T> copy_;
  InstanceMetrics* metrics_;
};

// Key handling: before the user's function sees the records of a batch that
// arrived on input kInput, begin_batch<kInput>(batch) takes their keys, and
// select(i) then makes the key of record i the current key of the keyed state
// the policy scopes (backend(), null when unkeyed). clear() runs after the
// last record.
//
// select_record(record) makes the key of that one record current, for an
// operator that calls its function outside the batch (the asynchronous map).
struct Unkeyed {
  template <int kInput, class T>
  void begin_batch(const std::vector<T>&) {}
  void select(std::size_t) {}
  template <class T>
  void select_record(const T&) {}
  KeyedStateBackend* backend() { return nullptr; }
  void clear() {}
};

// The keys of the batch being processed, their stable hashes and their
// slots in the keyed state, all taken before its first record is processed:
// the slot lookups of a batch run together, a tight loop whose cache misses
// overlap (one after another, each record waited for its own), and a record
// then finds its slot ready. A key new to the state gets its slot only when
// its record uses the state.
template <class K>
class BatchKeys {
 public:
  template <class T, class KeyFn>
  void take(const std::vector<T>& batch, KeyFn& key_fn, const TypedKeyedStateBackend<K>& state) {
    const std::size_t n = batch.size();
    // The vectors only grow: after a smaller batch (linger flushes make
    // them common) they were resized back up, which zero-filled what the
    // loops below then overwrote. One loop per step, each tight (no
    // capacity check per key), where one loop doing all reloaded the
    // vectors after every store.
    if (hashes_.size() < n) {
      hashes_.resize(n);
      slots_.resize(n);
      if constexpr (kKeysReused) keys_.resize(n);
    }
    if constexpr (kKeysReused) {
      for (std::size_t i = 0; i < n; ++i) keys_[i] = key_fn(batch[i]);
    } else {
      keys_.clear();
      for (const T& record : batch) keys_.push_back(key_fn(record));
    }
    for (std::size_t i = 0; i < n; ++i) hashes_[i] = stable_hash(keys_[i]);
    state.find_slots({keys_.data(), n}, {hashes_.data(), n}, slots_.data());
  }
  void select(std::size_t i, TypedKeyedStateBackend<K>& state) const {
    state.set_current_key(keys_[i], hashes_[i], slots_[i]);
  }

 private:
  // Keys are assigned in place where K allows it (else gathered afresh).
  static constexpr bool kKeysReused =
      std::is_default_constructible_v<K> && std::is_move_assignable_v<K>;

  // Entries past the current batch's size are left from larger batches.
  std::vector<K> keys_;
  std::vector<std::uint64_t> hashes_;
  std::vector<std::uint32_t> slots_;
};

// The key of key_by, for a single-input operator (kInput is always 0).
template <class K, class KeyFn>
class Keyed {
 public:
  explicit Keyed(KeyFn key_fn) : key_fn_(std::move(key_fn)) {}
  // A copy starts with empty state: each operator instance owns its own.
  Keyed(const Keyed& other) : key_fn_(other.key_fn_) {}
  template <int kInput, class T>
  void begin_batch(const std::vector<T>& batch) {
    keys_.take(batch, key_fn_, state_);
  }
  void select(std::size_t i) { keys_.select(i, state_); }
  template <class T>
  void select_record(const T& record) {
    record_key_.emplace(key_fn_(record));  // the state keeps a pointer to the current key
    state_.set_current_key(*record_key_);
  }
  KeyedStateBackend* backend() { return &state_; }
  void clear() { state_.clear_current_key(); }

 private:
  KeyFn key_fn_;
  BatchKeys<K> keys_;
  std::optional<K> record_key_;
  TypedKeyedStateBackend<K> state_;
};

// What every operator with one function has: the function, its context, its
// metrics and key handling.
// The function is built in place by `make` (which returns F by value), so a
// function class need be neither copyable nor movable.
template <class F, class KeyPolicy>
class FunctionHolder {
 public:
  template <class Make>
  FunctionHolder(const Make& make, KeyPolicy key, OperatorSetup& setup)
      : function_(make()),
        key_(std::move(key)),
        metrics_(setup.metrics),
        ctx_(setup.identity, setup.metrics->user, key_.backend(), setup.stop_requested),
        max_parallelism_(setup.config->max_parallelism) {}

  void open_function() {
    run_user_code(ctx_, *metrics_, [&] { detail::open_function(function_, ctx_); });
  }
  void close_function() {
    key_.clear();
    run_user_code(ctx_, *metrics_, [&] { detail::close_function(function_); });
  }

  // The function's save_state and the keyed state, for Operator::snapshot.
  void snapshot_function(OperatorSnapshot& out, std::uint64_t checkpoint_id) {
    if constexpr (HasCheckpointedState<F>) {
      Writer writer;
      run_user_code(ctx_, *metrics_,
                    [&] { save_function_state(function_, writer, checkpoint_id); });
      out.function_state = writer.take();
    }
    if (KeyedStateBackend* backend = key_.backend()) {
      backend->snapshot(max_parallelism_, out.key_groups);
    }
  }
  void restore_function(const OperatorSnapshot& in) {
    if constexpr (HasCheckpointedState<F>) {
      if (in.function_state) {
        Reader reader(*in.function_state);
        run_user_code(ctx_, *metrics_, [&] { function_.restore_state(reader); });
      }
    }
    if (KeyedStateBackend* backend = key_.backend()) {
      for (const auto& [group, bytes] : in.key_groups) backend->restore(bytes);
    }
  }
  void notify_function(std::uint64_t checkpoint_id) {
    if constexpr (HasCheckpointNotification<F>) {
      run_user_code(ctx_, *metrics_, [&] { function_.notify_checkpoint_complete(checkpoint_id); });
    }
  }

 protected:
  // Counts `batch` in, then runs `per_record` on each record of it with the
  // record's key selected, as this instance's busy time; an exception from
  // user code becomes an OperatorError. per_record is copied into the loop's
  // closure: reached through a reference, its captures were reloaded after
  // every store to the output (one more instruction per record in map).
  template <int kInput, class T, class PerRecord>
  void for_each_record(std::vector<T>& batch, PerRecord&& per_record) {
    metrics_->add(metrics_->records_in, batch.size());
    ScopedTimer timer(metrics_->busy_ns);
    run_user_code(ctx_, *metrics_, [&, per_record = std::forward<PerRecord>(per_record)]() mutable {
      key_.template begin_batch<kInput>(batch);
      std::size_t i = 0;
      for (auto& record : batch) {
        key_.select(i++);
        per_record(record);
      }
    });
  }

  F function_;
  KeyPolicy key_;
  InstanceMetrics* metrics_;
  RuntimeContext ctx_;
  int max_parallelism_;
};

// The operators that apply one function to each record of one input: map,
// filter, flat_map and sink.
template <class In, class F, class KeyPolicy>
class SingleInputOperator : public Operator,
                            public BatchReceiver<In>,
                            protected FunctionHolder<F, KeyPolicy> {
 public:
  void open() override { this->open_function(); }
  void finish() override { this->close_function(); }
  BatchReceiverBase& input(int) override { return *this; }
  void snapshot(OperatorSnapshot& out, std::uint64_t checkpoint_id) override {
    this->snapshot_function(out, checkpoint_id);
  }
  void restore(const OperatorSnapshot& in) override { this->restore_function(in); }
  void notify_checkpoint_complete(std::uint64_t id) override { this->notify_function(id); }

 protected:
  using FunctionHolder<F, KeyPolicy>::FunctionHolder;

  template <class PerRecord>
  void for_each_record(std::vector<In>& batch, PerRecord&& per_record) {
    FunctionHolder<F, KeyPolicy>::template for_each_record<0>(batch,
                                                              std::forward<PerRecord>(per_record));
  }
};

// An Output fed record by record through a Collector: the records gather in
// a buffer that goes downstream whenever it holds batch_size records, and on
// flush(). The collector points into this object, so it stays in place.
template <class T>
class CollectingOutput {
 public:
  explicit CollectingOutput(OperatorSetup& setup)
      : output_(setup),
        collector_(buffer_, setup.config->batch_size, &CollectingOutput::flush_buffer, this) {}
  CollectingOutput(const CollectingOutput&) = delete;
  CollectingOutput& operator=(const CollectingOutput&) = delete;

  Collector<T>& collector() { return collector_; }
  void flush() {
    output_.emit(buffer_);
    buffer_.clear();
  }

 private:
  // Called by the collector when the buffer is full. This runs downstream
  // code, so it is outside the operator's timer only approximately; output
  // batches stay bounded by batch_size.
  static void flush_buffer(void* self) { static_cast<CollectingOutput*>(self)->flush(); }

  Output<T> output_;
  std::vector<T> buffer_;
  Collector<T> collector_;
};

template <class In, class Out, class F, class KeyPolicy>
class MapOperator final : public SingleInputOperator<In, F, KeyPolicy> {
 public:
  template <class Make>
  MapOperator(const Make& make, KeyPolicy key, OperatorSetup& setup)
      : SingleInputOperator<In, F, KeyPolicy>(make, std::move(key), setup), output_(setup) {}

  void receive(std::vector<In>& batch) override {
    out_.clear();
    this->for_each_record(batch,
                          [&](In& record) { out_.push_back(call_map(this->function_, record)); });
    output_.emit(out_);
  }

 private:
  Output<Out> output_;
  std::vector<Out> out_;
};

// Keeps the records the predicate accepts, compacting the batch in place.
template <class T, class F, class KeyPolicy>
class FilterOperator final : public SingleInputOperator<T, F, KeyPolicy> {
 public:
  template <class Make>
  FilterOperator(const Make& make, KeyPolicy key, OperatorSetup& setup)
      : SingleInputOperator<T, F, KeyPolicy>(make, std::move(key), setup), output_(setup) {}

  void receive(std::vector<T>& batch) override {
    // Compacts through pointers: with indexes, this callback cost one more
    // instruction per record.
    T* const first = batch.data();
    T* kept_end = first;
    this->for_each_record(batch, [&](T& record) {
      if (call_filter(this->function_, std::as_const(record))) {
        if (kept_end != &record) *kept_end = std::move(record);
        ++kept_end;
      }
    });
    batch.resize(static_cast<std::size_t>(kept_end - first));
    output_.emit(batch);
  }

 private:
  Output<T> output_;
};

// flat_map: the function either fills a Collector<Out>& or returns a range.
template <class In, class Out, class F, class KeyPolicy>
class FlatMapOperator final : public SingleInputOperator<In, F, KeyPolicy> {
 public:
  template <class Make>
  FlatMapOperator(const Make& make, KeyPolicy key, OperatorSetup& setup)
      : SingleInputOperator<In, F, KeyPolicy>(make, std::move(key), setup), output_(setup) {}

  void finish() override {
    SingleInputOperator<In, F, KeyPolicy>::finish();
    output_.flush();
  }

  void receive(std::vector<In>& batch) override {
    Collector<Out>& collector = output_.collector();
    this->for_each_record(batch, [&](In& record) {
      if constexpr (Callable_flat_map<F, In&, Collector<Out>&>) {
        call_flat_map(this->function_, record, collector);
      } else {
        for (auto&& value : call_flat_map(this->function_, record)) {
          collector.collect(Out(std::forward<decltype(value)>(value)));
        }
      }
    });
    output_.flush();
  }

 private:
  CollectingOutput<Out> output_;
};

template <class T, class F, class KeyPolicy>
class SinkOperator final : public SingleInputOperator<T, F, KeyPolicy> {
 public:
  template <class Make>
  SinkOperator(const Make& make, KeyPolicy key, OperatorSetup& setup)
      : SingleInputOperator<T, F, KeyPolicy>(make, std::move(key), setup) {}

  void receive(std::vector<T>& batch) override {
    this->for_each_record(batch,
                          [&](T& record) { call_sink(this->function_, std::as_const(record)); });
  }
};

template <class T, class S>
class SourceOperatorImpl final : public SourceOperator, private FunctionHolder<S, Unkeyed> {
  using Base = FunctionHolder<S, Unkeyed>;

 public:
  template <class Make>
  SourceOperatorImpl(const Make& make, OperatorSetup& setup)
      : Base(make, Unkeyed{}, setup), output_(setup) {}

  void open() override { this->open_function(); }
  void finish() override { this->close_function(); }
  BatchReceiverBase& input(int) override { throw std::logic_error("a source has no input"); }
  void snapshot(OperatorSnapshot& out, std::uint64_t checkpoint_id) override {
    this->snapshot_function(out, checkpoint_id);
  }
  void restore(const OperatorSnapshot& in) override { this->restore_function(in); }
  void notify_checkpoint_complete(std::uint64_t id) override { this->notify_function(id); }

  bool produce(std::size_t max_records, std::chrono::steady_clock::time_point deadline) override {
    bool more = true;
    out_.clear();
    {
      ScopedTimer timer(this->metrics_->busy_ns);
      run_user_code(this->ctx_, *this->metrics_, [&] {
        if constexpr (HasNextBatch<S, T>) {
          // In bulk: no call and no clock check per record.
          more = this->function_.next_batch(out_, max_records);
        } else {
          // Cheap records: the clock costs about as much as one of them.
          LingerClock linger(deadline, /*max_stride=*/64);
          while (out_.size() < max_records) {
            std::optional<T> next = call_next(this->function_);
            if (!next) {
              more = false;
              break;
            }
            out_.push_back(std::move(*next));
            if (linger.due()) break;
          }
        }
      });
    }
    output_.emit(out_);
    return more;
  }

 private:
  Output<T> output_;
  std::vector<T> out_;
};

// The keys of a keyed connect: both inputs are keyed by the same key type,
// each with its own key function, and share one keyed state.
template <class K, class KeyFnA, class KeyFnB>
class KeyedPair {
 public:
  KeyedPair(KeyFnA a, KeyFnB b) : key_a_(std::move(a)), key_b_(std::move(b)) {}
  // A copy starts with empty state: each operator instance owns its own.
  KeyedPair(const KeyedPair& other) : key_a_(other.key_a_), key_b_(other.key_b_) {}
  template <int kInput, class T>
  void begin_batch(const std::vector<T>& batch) {
    if constexpr (kInput == 0) {
      keys_.take(batch, key_a_, state_);
    } else {
      keys_.take(batch, key_b_, state_);
    }
  }
  void select(std::size_t i) { keys_.select(i, state_); }
  KeyedStateBackend* backend() { return &state_; }
  void clear() { state_.clear_current_key(); }

 private:
  KeyFnA key_a_;
  KeyFnB key_b_;
  BatchKeys<K> keys_;
  TypedKeyedStateBackend<K> state_;
};

// comap: map1 for the first input, map2 for the second.
template <class F>
struct CoMapLogic {
  F function;
  void open(RuntimeContext& ctx) { open_function(function, ctx); }
  void close() { close_function(function); }
  void save_state(Writer& out, std::uint64_t id) requires HasCheckpointedState<F> {
    save_function_state(function, out, id);
  }
  void restore_state(Reader& in) requires HasCheckpointedState<F> { function.restore_state(in); }
  void notify_checkpoint_complete(std::uint64_t id) requires HasCheckpointNotification<F> {
    function.notify_checkpoint_complete(id);
  }
  template <int kInput, class T, class Out>
  void process(T& record, Collector<Out>& out) {
    if constexpr (kInput == 0) {
      out.collect(call_map1(function, record));
    } else {
      out.collect(call_map2(function, record));
    }
  }
};

// A keyed join of two unbounded streams: every record is kept in keyed list
// state, and each arrival emits join(a, b) with every record of the same key
// already seen on the other input. Memory grows with the input; bounded inputs
// or a later windowed join keep it in check.
template <class A, class B, class F>
struct JoinLogic {
  F function;
  std::optional<ListState<A>> left;
  std::optional<ListState<B>> right;
  void open(RuntimeContext& ctx) {
    left.emplace(ctx.list_state<A>("sage.join.left"));
    right.emplace(ctx.list_state<B>("sage.join.right"));
    open_function(function, ctx);
  }
  void close() { close_function(function); }
  void save_state(Writer& out, std::uint64_t id) requires HasCheckpointedState<F> {
    save_function_state(function, out, id);
  }
  void restore_state(Reader& in) requires HasCheckpointedState<F> { function.restore_state(in); }
  void notify_checkpoint_complete(std::uint64_t id) requires HasCheckpointNotification<F> {
    function.notify_checkpoint_complete(id);
  }
  template <int kInput, class T, class Out>
  void process(T& record, Collector<Out>& out) {
    if constexpr (kInput == 0) {
      for (const B& b : right->get()) out.collect(call_join(function, std::as_const(record), b));
      left->add(record);
    } else {
      for (const A& a : left->get()) out.collect(call_join(function, a, std::as_const(record)));
      right->add(record);
    }
  }
};

// An operator with two inputs of different types (connect). Logic (CoMapLogic,
// JoinLogic) is its function: open(ctx), close(), and process<kInput>(record,
// collector) per record of either input.
template <class A, class B, class Out, class Logic, class KeyPolicy>
class TwoInputOperator final : public Operator, private FunctionHolder<Logic, KeyPolicy> {
 public:
  template <class Make>
  TwoInputOperator(const Make& make, KeyPolicy key, OperatorSetup& setup)
      : FunctionHolder<Logic, KeyPolicy>(make, std::move(key), setup),
        output_(setup),
        first_(*this),
        second_(*this) {}

  void open() override { this->open_function(); }
  void finish() override {
    this->close_function();
    output_.flush();
  }
  void snapshot(OperatorSnapshot& out, std::uint64_t checkpoint_id) override {
    this->snapshot_function(out, checkpoint_id);
  }
  void restore(const OperatorSnapshot& in) override { this->restore_function(in); }
  void notify_checkpoint_complete(std::uint64_t id) override { this->notify_function(id); }
  BatchReceiverBase& input(int index) override {
    return index == 0 ? static_cast<BatchReceiverBase&>(first_) : second_;
  }

 private:
  template <class T, int kInput>
  struct Port final : BatchReceiver<T> {
    explicit Port(TwoInputOperator& op) : op(op) {}
    void receive(std::vector<T>& batch) override { op.template process<T, kInput>(batch); }
    TwoInputOperator& op;
  };

  template <class T, int kInput>
  void process(std::vector<T>& batch) {
    Collector<Out>& collector = output_.collector();
    this->template for_each_record<kInput>(
        batch, [&](T& record) { this->function_.template process<kInput>(record, collector); });
    output_.flush();
  }

  CollectingOutput<Out> output_;
  Port<A, 0> first_;
  Port<B, 1> second_;
};

}  // namespace sage::detail
