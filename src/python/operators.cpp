#include "python/operators.hpp"

#include <pybind11/pybind11.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <exception>
#include <optional>
#include <stdexcept>
#include <thread>

#include "python/key_hash.hpp"

namespace sage::python {
namespace {

// Calls fn(arg) (GIL held); throws PythonError if it raised.
Object call_one(PyObject* fn, PyObject* arg) {
  Object result = Object::steal(PyObject_CallOneArg(fn, arg));
  if (!result) throw_python_error();
  return result;
}

// A function a factory built as (call, open, close, save_state,
// restore_state, notify_checkpoint_complete), the last five None when the
// function has no such method: open(ctx) when it is built, close() by
// finish(). Key functions and partitioners use it; so does Instance, whose
// call may be a tuple (comap). GIL held throughout.
class BoundFunction {
 public:
  // Calls `factory`, then the function's open with `handle` when it has one.
  void build(PyObject* factory, const std::shared_ptr<ContextHandle>& handle) {
    Object made = Object::steal(PyObject_CallNoArgs(factory));
    if (!made) throw_python_error();
    if (!PyTuple_Check(made.get()) || PyTuple_GET_SIZE(made.get()) != 6) {
      throw PythonError(
          "internal: a function factory must return (call, open, close, save_state, "
          "restore_state, notify_checkpoint_complete)");
    }
    call_ = Object::borrow(PyTuple_GET_ITEM(made.get(), 0));
    close_ = Object::borrow(PyTuple_GET_ITEM(made.get(), 2));
    save_ = Object::borrow(PyTuple_GET_ITEM(made.get(), 3));
    restore_ = Object::borrow(PyTuple_GET_ITEM(made.get(), 4));
    notify_ = Object::borrow(PyTuple_GET_ITEM(made.get(), 5));
    PyObject* open = PyTuple_GET_ITEM(made.get(), 1);
    if (open != Py_None) {
      pybind11::object ctx = pybind11::cast(handle);
      call_one(open, ctx.ptr());
    }
  }
  PyObject* call() const { return call_.get(); }
  // Calls close() once, if the function was built and has one.
  void finish() {
    Object close = std::move(close_);
    if (close && close.get() != Py_None) {
      Object result = Object::steal(PyObject_CallNoArgs(close.get()));
      if (!result) throw_python_error();
    }
  }

  // The function's save_state(), pickled; nothing when it has none.
  std::optional<std::string> save_state() const {
    if (!save_ || save_.get() == Py_None) return std::nullopt;
    std::vector<Object> state{Object::steal(PyObject_CallNoArgs(save_.get()))};
    if (!state.front()) throw_python_error();
    return encode_batch(state);
  }
  // restore_state(state) with what save_state() returned.
  void restore_state(std::string_view bytes) const {
    std::vector<Object> state = decode_batch(bytes);
    if (state.size() != 1 || !restore_ || restore_.get() == Py_None) {
      throw PythonError(
          "a checkpoint holds state of a function that cannot restore it; give it "
          "restore_state(state) beside save_state()");
    }
    call_one(restore_.get(), state.front().get());
  }
  // notify_checkpoint_complete(checkpoint_id), when the function has it.
  void notify(std::uint64_t checkpoint_id) const {
    if (!notify_ || notify_.get() == Py_None) return;
    Object id = Object::steal(PyLong_FromUnsignedLongLong(checkpoint_id));
    call_one(notify_.get(), id.get());
  }

 private:
  Object call_, close_, save_, restore_, notify_;
};

// Hands an operator's output downstream: every target but the last gets a
// copy, made under the GIL by prepare(); send() runs without it, since a
// target may block on a full queue.
class Output {
 public:
  explicit Output(const detail::OperatorSetup& setup) : metrics_(setup.metrics) {
    for (auto* target : setup.outputs) {
      targets_.push_back(static_cast<detail::BatchReceiver<Object>*>(target));
    }
    if (!targets_.empty()) copies_.resize(targets_.size() - 1);
  }
  // GIL held.
  void prepare(const std::vector<Object>& batch) {
    for (auto& copy : copies_) copy.assign(batch.begin(), batch.end());
  }
  // GIL not held. The targets take the records out of the batches (Python
  // operators steal them, channel writers move them).
  void send(std::vector<Object>& batch) {
    if (batch.empty()) return;
    metrics_->add(metrics_->records_out, batch.size());
    for (std::size_t i = 0; i < copies_.size(); ++i) targets_[i]->receive(copies_[i]);
    if (!targets_.empty()) targets_.back()->receive(batch);
  }

 private:
  std::vector<detail::BatchReceiver<Object>*> targets_;
  std::vector<std::vector<Object>> copies_;
  detail::InstanceMetrics* metrics_;
};

// One parallel instance of a Python function: built from the factory when
// it opens, with its RuntimeContext and metrics.
class Instance {
 public:
  Instance(Object factory, detail::OperatorSetup& setup,
           detail::KeyedStateBackend* keyed_state = nullptr)
      : factory_(std::move(factory)),
        metrics_(setup.metrics),
        ctx_(setup.identity, setup.metrics->user, keyed_state),
        handle_(std::make_shared<ContextHandle>(ContextHandle{&ctx_})) {}
  ~Instance() { handle_->ctx = nullptr; }
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  // Runs `body` as user code: a Python error fails the job with this
  // instance's name.
  template <class Body>
  void run(Body&& body) {
    detail::run_user_code(ctx_, *metrics_, std::forward<Body>(body));
  }

  // GIL held. Builds the function and calls its open(ctx).
  void open() {
    function_.build(factory_.get(), handle_);
    PyObject* call = function_.call();
    calls_.clear();
    if (PyTuple_Check(call)) {  // comap: one callable per input
      for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(call); ++i) {
        calls_.push_back(Object::borrow(PyTuple_GET_ITEM(call, i)));
      }
    } else {
      calls_.push_back(Object::borrow(call));
    }
  }
  // GIL held. Calls the close() of the function and of `others` (its key
  // functions), all of them even when one raises; the context is invalid after.
  void close(std::vector<BoundFunction>& others) {
    struct Invalidate {
      ContextHandle& handle;
      ~Invalidate() { handle.ctx = nullptr; }
    } invalidate{*handle_};
    std::exception_ptr first;  // the error reported
    auto finish = [&](BoundFunction& function) {
      try {
        function.finish();
      } catch (...) {
        if (!first) first = std::current_exception();
      }
    };
    finish(function_);
    for (auto& other : others) finish(other);
    if (first) std::rethrow_exception(first);
  }
  void close() {
    std::vector<BoundFunction> none;
    close(none);
  }
  const std::shared_ptr<ContextHandle>& shared_handle() const { return handle_; }

  // GIL held. The function's own state in checkpoints (BoundFunction).
  std::optional<std::string> save_state() const { return function_.save_state(); }
  void restore_state(std::string_view bytes) const { function_.restore_state(bytes); }
  void notify(std::uint64_t checkpoint_id) const { function_.notify(checkpoint_id); }

  // The callable for records of input `input`: the only one, or (comap) the input's own.
  PyObject* call(std::size_t input = 0) const {
    if (calls_.size() == 1) return calls_.front().get();
    if (input >= calls_.size()) {
      throw PythonError("input " + std::to_string(input) + " has no function (there are " +
                        std::to_string(calls_.size()) +
                        "); a comap over n streams needs map0 to "
                        "map<n-1>");
    }
    return calls_[input].get();
  }
  detail::InstanceMetrics& metrics() { return *metrics_; }
  RuntimeContext& ctx() { return ctx_; }
  ContextHandle& handle() { return *handle_; }

 private:
  Object factory_;
  BoundFunction function_;
  std::vector<Object> calls_;
  detail::InstanceMetrics* metrics_;
  RuntimeContext ctx_;
  std::shared_ptr<ContextHandle> handle_;
};

// map, filter, flat_map and sink over one or more inputs: records of input i
// go to the function's callable i (comap's map<i>), and the records of every
// input (a union) to the one callable of the other functions.
template <TransformKind kKind>
class TransformOperator final : public detail::Operator {
 public:
  TransformOperator(const Object& factory, const std::vector<Object>& key_factories,
                    detail::OperatorSetup& setup)
      : key_factories_(key_factories),
        keyed_(std::any_of(key_factories.begin(), key_factories.end(),
                           [](const Object& f) { return static_cast<bool>(f); })),
        instance_(factory, setup, keyed_ ? &state_ : nullptr),
        output_(setup),
        batch_size_(setup.config->batch_size),
        max_parallelism_(setup.config->max_parallelism) {}

  void open() override {
    Gil gil;
    instance_.run([&] {
      instance_.open();
      // Key functions share the instance's context: open(ctx) after its own.
      key_fns_.resize(key_factories_.size());
      for (std::size_t i = 0; i < key_factories_.size(); ++i) {
        if (key_factories_[i])
          key_fns_[i].build(key_factories_[i].get(), instance_.shared_handle());
      }
    });
  }
  void finish() override {
    Gil gil;
    instance_.run([&] { instance_.close(key_fns_); });
  }
  // Checkpoints: the function's save_state() and the keyed state, both pickled.
  void snapshot(detail::OperatorSnapshot& out, std::uint64_t) override {
    Gil gil;
    instance_.run([&] {
      out.function_state = instance_.save_state();
      if (keyed_) state_.snapshot(max_parallelism_, out.key_groups);
    });
  }
  void restore(const detail::OperatorSnapshot& in) override {
    Gil gil;
    instance_.run([&] {
      if (in.function_state) instance_.restore_state(*in.function_state);
      if (keyed_) {
        for (const auto& [group, bytes] : in.key_groups) state_.restore(bytes);
      }
    });
  }
  void notify_checkpoint_complete(std::uint64_t id) override {
    Gil gil;
    instance_.run([&] { instance_.notify(id); });
  }
  // Called while the task is built, once per input the plan connects.
  detail::BatchReceiverBase& input(int index) override {
    while (ports_.size() <= static_cast<std::size_t>(index)) {
      ports_.emplace_back(*this, ports_.size());
    }
    return ports_[static_cast<std::size_t>(index)];
  }

 private:
  struct Port final : detail::BatchReceiver<Object> {
    Port(TransformOperator& op, std::size_t index) : op(op), index(index) {}
    void receive(std::vector<Object>& batch) override { op.receive(index, batch); }
    TransformOperator& op;
    std::size_t index;
  };

  void receive(std::size_t port, std::vector<Object>& batch) {
    auto& metrics = instance_.metrics();
    metrics.add(metrics.records_in, batch.size());
    {
      Gil gil;
      out_.clear();
      {
        detail::ScopedTimer timer(metrics.busy_ns);
        instance_.run([&] {
          PyObject* fn = instance_.call(port);
          PyObject* key_fn = port < key_fns_.size() ? key_fns_[port].call() : nullptr;
          if (key_fn == nullptr) {
            for (auto& record : batch) process(fn, std::move(record));
            return;
          }
          struct Unselect {
            TransformOperator& op;
            ~Unselect() {
              op.state_.clear_current_key();
              op.instance_.handle().current_key = nullptr;
              op.current_key_.reset();
            }
          } unselect{*this};
          for (auto& record : batch) {
            select_key(key_fn, record.get());
            process(fn, std::move(record));
          }
        });
      }
      output_.prepare(out_);
    }
    output_.send(out_);
  }

  // GIL held: makes the record's key the current key of the keyed state.
  void select_key(PyObject* key_fn, PyObject* record) {
    current_key_ = call_one(key_fn, record);
    if (!key_identity(current_key_.get(), key_bytes_)) throw_python_error();
    state_.set_current_key(key_bytes_);
    instance_.handle().current_key = current_key_.get();
  }

  // GIL held. `record` dies here unless it is kept.
  void process(PyObject* fn, Object record) {
    Object result = call_one(fn, record.get());
    if constexpr (kKind == TransformKind::kMap) {
      if (result.get() != Py_None) out_.push_back(std::move(result));  // None drops, as in SAGE
    } else if constexpr (kKind == TransformKind::kFilter) {
      const int keep = PyObject_IsTrue(result.get());
      if (keep < 0) throw_python_error();
      if (keep == 1) out_.push_back(std::move(record));
    } else if constexpr (kKind == TransformKind::kFlatMap) {
      if (result.get() == Py_None) return;
      Object iterator = Object::steal(PyObject_GetIter(result.get()));
      if (!iterator) throw_python_error();
      while (PyObject* item = PyIter_Next(iterator.get())) {
        out_.push_back(Object::steal(item));
        if (out_.size() >= batch_size_) flush_now();
      }
      if (PyErr_Occurred()) throw_python_error();
    }
  }
  // GIL held: sends what flat_map gathered so far, releasing the GIL meanwhile.
  void flush_now() {
    output_.prepare(out_);
    {
      GilRelease unlocked;
      output_.send(out_);
    }
    out_.clear();
  }

  // Keyed state: keys by their key_identity (and its stable hash, which a
  // restore computes again).
  std::vector<Object> key_factories_;
  std::vector<BoundFunction> key_fns_;
  bool keyed_;
  detail::TypedKeyedStateBackend<std::string> state_;
  Object current_key_;
  std::string key_bytes_;
  Instance instance_;
  Output output_;
  std::deque<Port> ports_;  // stable addresses: the task holds them
  std::vector<Object> out_;
  std::size_t batch_size_;
  int max_parallelism_;
};

class SourceOperator final : public detail::SourceOperator {
 public:
  SourceOperator(SourceKind kind, const Object& payload, const Object& stop_type,
                 detail::OperatorSetup& setup)
      : kind_(kind),
        instance_(kind == SourceKind::kCollection ? Object{} : payload, setup),
        list_(kind == SourceKind::kCollection ? payload : Object{}),
        stop_type_(stop_type),
        output_(setup) {}
  ~SourceOperator() override {
    Gil gil;  // one acquisition for what it still holds
    out_.clear();
  }

  void open() override {
    if (kind_ == SourceKind::kCollection) {
      next_ = static_cast<std::size_t>(instance_.ctx().parallel_index());
      step_ = static_cast<std::size_t>(instance_.ctx().parallelism());
      return;
    }
    Gil gil;
    instance_.run([&] { instance_.open(); });
  }
  void finish() override {
    if (kind_ == SourceKind::kCollection) return;
    Gil gil;
    instance_.run([&] { instance_.close(); });
  }
  detail::BatchReceiverBase& input(int) override {
    throw std::logic_error("a source has no input");
  }
  // Checkpoints: the position in a collection; a function's save_state(),
  // or else (a BatchFunction) how many records it returned, which a restore
  // skips by calling it as often again (it must return the same records).
  void snapshot(detail::OperatorSnapshot& out, std::uint64_t) override {
    Writer position;
    if (kind_ == SourceKind::kCollection) {
      position.write_varint(next_);
    } else {
      Gil gil;
      instance_.run([&] {
        const auto state = instance_.save_state();
        position.write_varint(state ? kSavedState : kRecordCount);
        if (state) {
          position.write(*state);
        } else {
          position.write_varint(emitted_);
        }
      });
    }
    out.function_state = position.take();
  }
  void restore(const detail::OperatorSnapshot& in) override {
    if (!in.function_state) return;
    Reader position(*in.function_state);
    if (kind_ == SourceKind::kCollection) {
      next_ = position.read_varint();
      return;
    }
    Gil gil;
    instance_.run([&] {
      if (position.read_varint() == kSavedState) {
        instance_.restore_state(position.read<std::string>());
        return;
      }
      const std::uint64_t count = position.read_varint();
      for (emitted_ = 0; emitted_ < count; ++emitted_) {
        Object skipped = Object::steal(PyObject_CallNoArgs(instance_.call()));
        if (!skipped) throw_python_error();
        if (skipped.get() == Py_None) {
          throw PythonError("the BatchFunction ended after " + std::to_string(emitted_) +
                            " records while replaying the " + std::to_string(count) +
                            " before the checkpoint; it must return the same records on every "
                            "run, or give it save_state() and restore_state(state)");
        }
      }
    });
  }
  void notify_checkpoint_complete(std::uint64_t id) override {
    if (kind_ == SourceKind::kCollection) return;
    Gil gil;
    instance_.run([&] { instance_.notify(id); });
  }

  bool produce(std::size_t max_records, std::chrono::steady_clock::time_point deadline) override {
    bool more = true;
    std::size_t produced = 0;
    {
      Gil gil;
      out_.clear();
      idle_ = false;
      {
        detail::ScopedTimer timer(instance_.metrics().busy_ns);
        instance_.run([&] { more = fill(max_records, deadline); });
        emitted_ += out_.size();
      }
      produced = out_.size();
      output_.prepare(out_);
    }
    output_.send(out_);
    back_off(produced);
    return more;
  }

 private:
  // GIL held. False once the source has ended.
  bool fill(std::size_t max_records, std::chrono::steady_clock::time_point deadline) {
    if (kind_ == SourceKind::kCollection) {
      const auto size = static_cast<std::size_t>(PyList_GET_SIZE(list_.get()));
      while (out_.size() < max_records && next_ < size) {
        out_.push_back(Object::borrow(PyList_GET_ITEM(list_.get(), next_)));
        next_ += step_;
      }
      return next_ < size;
    }
    // A slow function must not hold records back: check the clock now and then.
    constexpr std::size_t kRecordsPerClockCheck = 64;
    while (out_.size() < max_records) {
      Object value = Object::steal(PyObject_CallNoArgs(instance_.call()));
      if (!value) throw_python_error();
      if (kind_ == SourceKind::kBatch) {
        if (value.get() == Py_None) return false;
      } else {
        if (value.get() == stop_type_.get()) return false;
        const int stop = PyObject_IsInstance(value.get(), stop_type_.get());
        if (stop < 0) throw_python_error();
        if (stop == 1) return false;
        if (value.get() == Py_None) {  // nothing now: poll again, after a while
          idle_ = true;
          return true;
        }
      }
      out_.push_back(std::move(value));
      if (out_.size() % kRecordsPerClockCheck == 0 &&
          std::chrono::steady_clock::now() >= deadline) {
        break;
      }
    }
    return true;
  }

  // GIL not held. A SourceFunction that has had nothing for `idle_polls_`
  // calls in a row is called again after 50 us, doubling up to 10 ms: an idle
  // source costs no core, and a new record waits at most 10 ms.
  void back_off(std::size_t produced) {
    constexpr std::chrono::microseconds kFirst(50), kLongest(10'000);
    if (!idle_ || produced > 0) {
      idle_polls_ = 0;
      return;
    }
    const auto wait =
        std::min<std::chrono::microseconds>(kFirst * (1 << std::min(idle_polls_, 8)), kLongest);
    ++idle_polls_;
    std::this_thread::sleep_for(wait);
  }

  SourceKind kind_;
  bool idle_ = false;  // the last call returned None
  int idle_polls_ = 0;
  Instance instance_;
  Object list_;
  Object stop_type_;
  Output output_;
  std::vector<Object> out_;
  std::size_t next_ = 0, step_ = 1;
  std::uint64_t emitted_ = 0;  // records this instance's function returned
  // What a function source's snapshot holds.
  static constexpr std::uint64_t kRecordCount = 0, kSavedState = 1;
};

// The writer of key_by and partition_custom: the target of every record of
// a batch under one GIL acquisition (the key's stable hash, or the user's
// partition()), then the records to their instances without it. The key
// function (or partitioner) is built before the first batch, its open(ctx)
// getting the producing instance's identity and metrics (no keyed state), and
// closed at the end of the stream.
class SelectingWriter final : public detail::ChannelWriterCommon<Object> {
 public:
  SelectingWriter(detail::WriterSetup setup, detail::Partitioning partitioning,
                  Object selector_factory, int max_parallelism)
      : ChannelWriterCommon<Object>(std::move(setup)),
        partitioning_(partitioning),
        selector_factory_(std::move(selector_factory)),
        max_parallelism_(max_parallelism),
        ctx_(RuntimeContext::Identity{.operator_name = this->setup().blame.operator_name,
                                      .parallel_index = this->setup().blame.parallel_index,
                                      .parallelism = this->setup().blame.parallelism,
                                      .node_id = this->setup().blame.node_id},
             this->setup().producer_metrics->user, nullptr),
        handle_(std::make_shared<ContextHandle>(ContextHandle{&ctx_})) {
    const auto parallelism = static_cast<int>(target_count());
    for (int group = 0; group < max_parallelism; ++group) {
      instance_of_group_.push_back(
          detail::instance_of_key_group(group, max_parallelism, parallelism));
    }
  }

  void receive(std::vector<Object>& batch) override {
    targets_.resize(batch.size());
    {
      Gil gil;
      const char* what = subject();
      if (!built_) {
        built_ = true;
        try {
          selector_.build(selector_factory_.get(), handle_);
        } catch (const PythonError& e) {
          fail(std::string(what) + " could not be built or opened:\n" + e.what());
        }
      }
      for (std::size_t i = 0; i < batch.size(); ++i) targets_[i] = select(batch[i].get(), what);
    }
    for (std::size_t i = 0; i < batch.size(); ++i) append(targets_[i], std::move(batch[i]));
  }
  void finish() override {
    if (built_) {
      Gil gil;
      try {
        selector_.finish();
      } catch (const PythonError& e) {
        fail(std::string(subject()) + "'s close() raised:\n" + e.what());
      }
    }
    ChannelWriterCommon<Object>::finish();
  }
  ~SelectingWriter() override { handle_->ctx = nullptr; }

 private:
  const char* subject() const {
    return partitioning_ == detail::Partitioning::kHash ? "key_by: the key function"
                                                        : "partition_custom: the partitioner";
  }
  // GIL held.
  std::size_t select(PyObject* record, const char* what) {
    const auto n = static_cast<long long>(target_count());
    if (partitioning_ == detail::Partitioning::kHash) {
      Object key = Object::steal(PyObject_CallOneArg(selector_.call(), record));
      if (!key) fail(std::string(what) + " raised:\n" + take_python_error());
      std::uint64_t hash = 0;
      if (!stable_key_hash(key.get(), hash)) fail(take_python_error());
      return static_cast<std::size_t>(
          instance_of_group_[detail::key_group_of(hash, max_parallelism_)]);
    }
    Object count = Object::steal(PyLong_FromLongLong(n));
    Object index =
        Object::steal(PyObject_CallFunctionObjArgs(selector_.call(), record, count.get(), nullptr));
    if (!index) fail(std::string(what) + " raised:\n" + take_python_error());
    if (!PyLong_Check(index.get())) {
      fail(std::string(what) + " returned a '" + Py_TYPE(index.get())->tp_name +
           "'; partition(record, num_partitions) must return an int in [0, " + std::to_string(n) +
           ")");
    }
    const long long target = PyLong_AsLongLong(index.get());
    if (target == -1 && PyErr_Occurred()) PyErr_Clear();
    if (target < 0 || target >= n) {
      Object text = Object::steal(PyObject_Repr(index.get()));
      fail(std::string(what) + " returned index " + (text ? PyUnicode_AsUTF8(text.get()) : "?") +
           " for " + std::to_string(n) + " partitions; partition() must return a value in [0, " +
           std::to_string(n) + ")");
    }
    return static_cast<std::size_t>(target);
  }

  [[noreturn]] void fail(std::string message) {
    detail::OperatorError error = setup().blame;
    error.message = std::move(message);
    throw error;
  }

  detail::Partitioning partitioning_;
  Object selector_factory_;
  BoundFunction selector_;
  bool built_ = false;
  int max_parallelism_;
  RuntimeContext ctx_;
  std::shared_ptr<ContextHandle> handle_;
  std::vector<int> instance_of_group_;
  std::vector<std::size_t> targets_;
};

// broadcast's writer: every record to every target, the copies made under one
// GIL acquisition per batch (the engine's BroadcastWriter would take it per copy).
class BroadcastWriter final : public detail::ChannelWriterCommon<Object> {
 public:
  using ChannelWriterCommon<Object>::ChannelWriterCommon;

  void receive(std::vector<Object>& batch) override {
    const std::size_t targets = target_count();
    copies_.resize(targets - 1);
    {
      Gil gil;
      for (auto& copy : copies_) copy.assign(batch.begin(), batch.end());
    }
    for (std::size_t t = 0; t + 1 < targets; ++t) {
      for (auto& record : copies_[t]) append(t, std::move(record));
    }
    for (auto& record : batch) append(targets - 1, std::move(record));
  }

 private:
  std::vector<std::vector<Object>> copies_;
};

}  // namespace

const char* to_string(TransformKind kind) {
  switch (kind) {
    case TransformKind::kMap:
      return "map";
    case TransformKind::kFilter:
      return "filter";
    case TransformKind::kFlatMap:
      return "flat_map";
    case TransformKind::kSink:
      return "sink";
  }
  return "unknown";
}

std::unique_ptr<detail::Operator> make_transform(TransformKind kind, const Object& factory,
                                                 const std::vector<Object>& key_factories,
                                                 detail::OperatorSetup& setup) {
  switch (kind) {
    case TransformKind::kMap:
      return std::make_unique<TransformOperator<TransformKind::kMap>>(factory, key_factories,
                                                                      setup);
    case TransformKind::kFilter:
      return std::make_unique<TransformOperator<TransformKind::kFilter>>(factory, key_factories,
                                                                         setup);
    case TransformKind::kFlatMap:
      return std::make_unique<TransformOperator<TransformKind::kFlatMap>>(factory, key_factories,
                                                                          setup);
    case TransformKind::kSink:
      return std::make_unique<TransformOperator<TransformKind::kSink>>(factory, key_factories,
                                                                       setup);
  }
  throw std::logic_error("unknown transform kind");
}

std::unique_ptr<detail::Operator> make_source(SourceKind kind, const Object& payload,
                                              const Object& stop_type,
                                              detail::OperatorSetup& setup) {
  return std::make_unique<SourceOperator>(kind, payload, stop_type, setup);
}

void PyEdgeFactory::encode(const detail::BatchBase& batch, Writer& out) const {
  const std::string bytes = encode_batch(static_cast<const detail::Batch<Object>&>(batch).records);
  out.write_bytes(bytes.data(), bytes.size());
}

std::unique_ptr<detail::BatchBase> PyEdgeFactory::decode(std::string_view bytes) const {
  return std::make_unique<detail::Batch<Object>>(decode_batch(bytes));
}

detail::CreatedWriter PyEdgeFactory::create_writer(detail::WriterSetup setup,
                                                   detail::Partitioning partitioning,
                                                   int producer_index, int max_parallelism) const {
  if (partitioning == detail::Partitioning::kBroadcast) {
    return wrap(std::make_unique<BroadcastWriter>(std::move(setup)));
  }
  return TypedEdgeFactory<Object>::create_writer(std::move(setup), partitioning, producer_index,
                                                 max_parallelism);
}

detail::CreatedWriter PyEdgeFactory::create_special_writer(detail::WriterSetup setup,
                                                           detail::Partitioning partitioning,
                                                           int max_parallelism) const {
  if (!selector_factory_ || (partitioning != detail::Partitioning::kHash &&
                             partitioning != detail::Partitioning::kCustom)) {
    throw std::logic_error(std::string("a Python edge cannot be partitioned by ") +
                           detail::to_string(partitioning));
  }
  return wrap(std::make_unique<SelectingWriter>(std::move(setup), partitioning, selector_factory_,
                                                max_parallelism));
}

}  // namespace sage::python
