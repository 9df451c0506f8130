// The writers of Python edges that route records themselves: key_by and
// partition_custom (the key function or partitioner runs under the GIL once
// per batch) and broadcast; and the edge factory that makes them.
#include <pybind11/pybind11.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "python/bound_function.hpp"
#include "python/key_hash.hpp"
#include "python/operators.hpp"

namespace sage::python {
namespace {

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
        routing_(max_parallelism, static_cast<int>(target_count())),
        ctx_(RuntimeContext::Identity{.operator_name = this->setup().blame.operator_name,
                                      .parallel_index = this->setup().blame.parallel_index,
                                      .parallelism = this->setup().blame.parallelism,
                                      .node_id = this->setup().blame.node_id},
             this->setup().producer_metrics->user, nullptr),
        handle_(std::make_shared<ContextHandle>(ContextHandle{&ctx_})) {}

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
      return static_cast<std::size_t>(routing_.instance_of(hash));
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
  detail::KeyGroupRouting routing_;
  RuntimeContext ctx_;
  std::shared_ptr<ContextHandle> handle_;
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
