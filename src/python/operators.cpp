#include "python/operators.hpp"

#include <pybind11/pybind11.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <exception>
#include <optional>
#include <stdexcept>
#include <thread>

#include "python/bound_function.hpp"
#include "python/key_hash.hpp"
#include "sage/detail/linger_clock.hpp"

namespace sage::python {
namespace {

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
    // A slow function must not hold records back past the linger; a call of
    // Python costs far more than reading the clock, so after every record.
    detail::LingerClock linger(deadline, /*max_stride=*/1);
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
      if (linger.due()) break;
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

}  // namespace sage::python
