// The operators that run Python functions inside the C++ engine: sources
// (a list, a BatchFunction, a SourceFunction), map, filter, flat_map and
// sink, and the keyed channel writer of key_by. Each takes the GIL once per
// batch and never holds it while handing records downstream (object.hpp).
//
// A function reaches an operator as a Python factory, called once per
// parallel instance when the instance opens; it returns a tuple
// (call, open, close): the callable run per record (a bound execute(), a
// lambda), and the instance's open(ctx) and close(), or None.
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
// the instance is open, null after (then its methods raise).
struct ContextHandle {
  RuntimeContext* ctx = nullptr;
};

enum class TransformKind { kMap, kFilter, kFlatMap, kSink };
const char* to_string(TransformKind kind);

enum class SourceKind {
  kCollection,  // payload: a list; instance i of p emits i, i+p, ...
  kBatch,       // payload: a factory; execute() until it returns None
  kSource,      // payload: a factory; execute() returns None for "nothing now", a StopSignal to end
};

// The operator factories of the logical graph. `factory` is the Python
// function factory (or the list of a collection source).
std::unique_ptr<detail::Operator> make_transform(TransformKind kind, const Object& factory,
                                                 detail::OperatorSetup& setup);
std::unique_ptr<detail::Operator> make_source(SourceKind kind, const Object& payload,
                                              const Object& stop_type,
                                              detail::OperatorSetup& setup);

// The edges of Python streams: batches cross processes as one pickle each
// (encode_batch), and key_by routes by stable_key_hash of the key function's
// result, taking the GIL once per batch.
class PyEdgeFactory : public detail::TypedEdgeFactory<Object> {
 public:
  // `key_factory`: null, or the key function's factory (a hash edge).
  explicit PyEdgeFactory(Object key_factory = {}) : key_factory_(std::move(key_factory)) {}
  std::string record_type() const override { return "python object"; }
  void encode(const detail::BatchBase& batch, Writer& out) const override;
  std::unique_ptr<detail::BatchBase> decode(std::string_view bytes) const override;

 protected:
  detail::CreatedWriter create_special_writer(detail::WriterSetup setup,
                                              detail::Partitioning partitioning,
                                              int max_parallelism) const override;

 private:
  Object key_factory_;
};

}  // namespace sage::python
