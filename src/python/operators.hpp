// The operators that run Python functions inside the C++ engine: sources
// (a list, a BatchFunction, a SourceFunction), map (and comap), filter,
// flat_map and sink, and the channel writer of key_by and partition_custom. Each takes the GIL once
// per batch and never holds it while handing records downstream (object.hpp).
//
// A function reaches an operator as a Python factory, called once per
// parallel instance when the instance opens; it returns a tuple
// (call, open, close): the callable run per record (a bound execute(), a
// lambda; for comap, a tuple of one per input), and the instance's open(ctx)
// and close(), or None.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "python/object.hpp"
#include "sage/detail/batch.hpp"
#include "sage/detail/channel_writer.hpp"
#include "sage/detail/logical_graph.hpp"
#include "sage/detail/operators.hpp"
#include "sage/runtime_context.hpp"

namespace sage::python {

// What Python's RuntimeContext object reaches: the instance's context while
// the instance is open, null after (then its methods raise), and in an
// operator after key_by the key of the record being processed (borrowed,
// read under the GIL).
struct ContextHandle {
  RuntimeContext* ctx = nullptr;
  PyObject* current_key = nullptr;
};

enum class TransformKind { kMap, kFilter, kFlatMap, kSink };
const char* to_string(TransformKind kind);

enum class SourceKind {
  kCollection,  // payload: a list; instance i of p emits i, i+p, ...
  kBatch,       // payload: a factory; execute() until it returns None
  kSource,      // payload: a factory; execute() returns None for "nothing now", a StopSignal to end
};

// The operator factories of the logical graph. `factory` is the Python
// function factory (or the list of a collection source). `key_factories`
// has, per input, the factory of the key function of the key_by it reads
// (null for an input that is not keyed): the operator then keeps keyed state
// and knows each record's key.
std::unique_ptr<detail::Operator> make_transform(TransformKind kind, const Object& factory,
                                                 const std::vector<Object>& key_factories,
                                                 detail::OperatorSetup& setup);
std::unique_ptr<detail::Operator> make_source(SourceKind kind, const Object& payload,
                                              const Object& stop_type,
                                              detail::OperatorSetup& setup);

// The edges of Python streams: batches cross processes as one pickle each
// (encode_batch); key_by routes by stable_key_hash of the key function's
// result, partition_custom by the partitioner's index, and broadcast copies
// each record to every target, each taking the GIL once per batch.
class PyEdgeFactory : public detail::TypedEdgeFactory<Object> {
 public:
  // `selector_factory`: null, or the factory of the key function (a hash
  // edge, key_by) or of the partitioner (a custom edge, partition_custom).
  explicit PyEdgeFactory(Object selector_factory = {})
      : selector_factory_(std::move(selector_factory)) {}
  std::string record_type() const override { return "python object"; }
  detail::CreatedWriter create_writer(detail::WriterSetup setup, detail::Partitioning partitioning,
                                      int producer_index, int max_parallelism) const override;
  void encode(const detail::BatchBase& batch, Writer& out) const override;
  std::unique_ptr<detail::BatchBase> decode(std::string_view bytes) const override;

 protected:
  detail::CreatedWriter create_special_writer(detail::WriterSetup setup,
                                              detail::Partitioning partitioning,
                                              int max_parallelism) const override;

 private:
  Object selector_factory_;
};

}  // namespace sage::python
