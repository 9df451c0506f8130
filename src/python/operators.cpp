#include "python/operators.hpp"

#include <pybind11/pybind11.h>

#include <chrono>
#include <stdexcept>

#include "python/key_hash.hpp"

namespace sage::python {
namespace {

// Calls fn(arg) (GIL held); throws PythonError if it raised.
Object call_one(PyObject* fn, PyObject* arg) {
  Object result = Object::steal(PyObject_CallOneArg(fn, arg));
  if (!result) throw_python_error();
  return result;
}

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
  Instance(Object factory, detail::OperatorSetup& setup)
      : factory_(std::move(factory)),
        metrics_(setup.metrics),
        ctx_(setup.identity, setup.metrics->user, nullptr),
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
    Object made = Object::steal(PyObject_CallNoArgs(factory_.get()));
    if (!made) throw_python_error();
    if (!PyTuple_Check(made.get()) || PyTuple_GET_SIZE(made.get()) != 3) {
      throw PythonError("internal: a function factory must return (call, open, close)");
    }
    call_ = Object::borrow(PyTuple_GET_ITEM(made.get(), 0));
    PyObject* open = PyTuple_GET_ITEM(made.get(), 1);
    close_ = Object::borrow(PyTuple_GET_ITEM(made.get(), 2));
    if (open != Py_None) {
      pybind11::object ctx = pybind11::cast(handle_);
      call_one(open, ctx.ptr());
    }
  }
  // GIL held. Calls the function's close(); the context is invalid after.
  void close() {
    struct Invalidate {
      ContextHandle& handle;
      ~Invalidate() { handle.ctx = nullptr; }
    } invalidate{*handle_};
    if (close_ && close_.get() != Py_None) {
      Object result = Object::steal(PyObject_CallNoArgs(close_.get()));
      if (!result) throw_python_error();
    }
  }

  PyObject* call() const { return call_.get(); }
  detail::InstanceMetrics& metrics() { return *metrics_; }
  RuntimeContext& ctx() { return ctx_; }

 private:
  Object factory_;
  Object call_, close_;
  detail::InstanceMetrics* metrics_;
  RuntimeContext ctx_;
  std::shared_ptr<ContextHandle> handle_;
};

// Python functions keep no checkpointed state yet: their snapshot is empty.
class PythonOperator : public detail::Operator {
 public:
  void snapshot(detail::OperatorSnapshot&, std::uint64_t) override {}
  void restore(const detail::OperatorSnapshot&) override {}
  void notify_checkpoint_complete(std::uint64_t) override {}
};

template <TransformKind kKind>
class TransformOperator final : public PythonOperator, public detail::BatchReceiver<Object> {
 public:
  TransformOperator(const Object& factory, detail::OperatorSetup& setup)
      : instance_(factory, setup), output_(setup), batch_size_(setup.config->batch_size) {}

  void open() override {
    Gil gil;
    instance_.run([&] { instance_.open(); });
  }
  void finish() override {
    Gil gil;
    instance_.run([&] { instance_.close(); });
  }
  detail::BatchReceiverBase& input(int) override { return *this; }

  void receive(std::vector<Object>& batch) override {
    auto& metrics = instance_.metrics();
    metrics.add(metrics.records_in, batch.size());
    {
      Gil gil;
      out_.clear();
      {
        detail::ScopedTimer timer(metrics.busy_ns);
        instance_.run([&] {
          for (auto& record : batch) process(std::move(record));
        });
      }
      output_.prepare(out_);
    }
    output_.send(out_);
  }

 private:
  // GIL held. `record` dies here unless it is kept.
  void process(Object record) {
    Object result = call_one(instance_.call(), record.get());
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

  Instance instance_;
  Output output_;
  std::vector<Object> out_;
  std::size_t batch_size_;
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
  void snapshot(detail::OperatorSnapshot&, std::uint64_t) override {}
  void restore(const detail::OperatorSnapshot&) override {}
  void notify_checkpoint_complete(std::uint64_t) override {}

  bool produce(std::size_t max_records, std::chrono::steady_clock::time_point deadline) override {
    bool more = true;
    {
      Gil gil;
      out_.clear();
      {
        detail::ScopedTimer timer(instance_.metrics().busy_ns);
        instance_.run([&] { more = fill(max_records, deadline); });
      }
      output_.prepare(out_);
    }
    output_.send(out_);
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
        if (value.get() == Py_None) return true;  // nothing now: poll again
      }
      out_.push_back(std::move(value));
      if (out_.size() % kRecordsPerClockCheck == 0 &&
          std::chrono::steady_clock::now() >= deadline) {
        break;
      }
    }
    return true;
  }

  SourceKind kind_;
  Instance instance_;
  Object list_;
  Object stop_type_;
  Output output_;
  std::vector<Object> out_;
  std::size_t next_ = 0, step_ = 1;
};

// key_by's writer: the key of every record of a batch under one GIL
// acquisition, then the records to their instances without it.
class KeyedWriter final : public detail::ChannelWriterCommon<Object> {
 public:
  KeyedWriter(detail::WriterSetup setup, Object key_factory, int max_parallelism)
      : ChannelWriterCommon<Object>(std::move(setup)),
        key_factory_(std::move(key_factory)),
        max_parallelism_(max_parallelism) {
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
      if (!key_fn_) {
        key_fn_ = Object::steal(PyObject_CallNoArgs(key_factory_.get()));
        if (!key_fn_) fail("key_by: the key function could not be built:\n" + take_python_error());
      }
      for (std::size_t i = 0; i < batch.size(); ++i) {
        Object key = Object::steal(PyObject_CallOneArg(key_fn_.get(), batch[i].get()));
        if (!key) fail("key_by: the key function raised:\n" + take_python_error());
        std::uint64_t hash = 0;
        if (!stable_key_hash(key.get(), hash)) fail(take_python_error());
        targets_[i] = static_cast<std::size_t>(
            instance_of_group_[detail::key_group_of(hash, max_parallelism_)]);
      }
    }
    for (std::size_t i = 0; i < batch.size(); ++i) append(targets_[i], std::move(batch[i]));
  }

 private:
  [[noreturn]] void fail(std::string message) {
    detail::OperatorError error = setup().blame;
    error.message = std::move(message);
    throw error;
  }

  Object key_factory_;
  Object key_fn_;
  int max_parallelism_;
  std::vector<int> instance_of_group_;
  std::vector<std::size_t> targets_;
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
                                                 detail::OperatorSetup& setup) {
  switch (kind) {
    case TransformKind::kMap:
      return std::make_unique<TransformOperator<TransformKind::kMap>>(factory, setup);
    case TransformKind::kFilter:
      return std::make_unique<TransformOperator<TransformKind::kFilter>>(factory, setup);
    case TransformKind::kFlatMap:
      return std::make_unique<TransformOperator<TransformKind::kFlatMap>>(factory, setup);
    case TransformKind::kSink:
      return std::make_unique<TransformOperator<TransformKind::kSink>>(factory, setup);
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

detail::CreatedWriter PyEdgeFactory::create_special_writer(detail::WriterSetup setup,
                                                           detail::Partitioning partitioning,
                                                           int max_parallelism) const {
  if (partitioning != detail::Partitioning::kHash || !key_factory_) {
    throw std::logic_error(std::string("a Python edge cannot be partitioned by ") +
                           detail::to_string(partitioning));
  }
  return wrap(std::make_unique<KeyedWriter>(std::move(setup), key_factory_, max_parallelism));
}

}  // namespace sage::python
