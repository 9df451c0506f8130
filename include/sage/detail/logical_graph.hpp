// The logical graph: what the program built, operator by operator, before
// parallelism is expanded. DataStream appends to it; the planner
// (src/graph/physical_plan) turns it into chains, tasks and channels. The typed
// parts (how to create an operator instance, how to write an edge's records)
// hide behind factories so the planner and runtime need no templates.
#pragma once

#include <cstddef>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "sage/detail/batch.hpp"
#include "sage/detail/channel_writer.hpp"
#include "sage/detail/operators.hpp"
#include "sage/error.hpp"
#include "sage/options.hpp"
#include "sage/serialization.hpp"

namespace sage::detail {

enum class Partitioning {
  kDefault,    // forward when parallelisms match, else rebalance
  kForward,    // instance i feeds instance i; parallelisms must match
  kRebalance,  // round robin
  kHash,       // key_by: by key group
  kBroadcast,  // every record to every instance
  kCustom,     // partition_custom: the user's partitioner picks
};
const char* to_string(Partitioning p);

// Creates the instances of one operator.
class OperatorFactory {
 public:
  virtual ~OperatorFactory() = default;
  virtual std::unique_ptr<Operator> create(OperatorSetup& setup) const = 0;
};

template <class Make>
class CallableOperatorFactory final : public OperatorFactory {
 public:
  explicit CallableOperatorFactory(Make make) : make_(std::move(make)) {}
  std::unique_ptr<Operator> create(OperatorSetup& setup) const override { return make_(setup); }

 private:
  Make make_;
};

// A channel writer together with its typed input side.
struct CreatedWriter {
  std::unique_ptr<ChannelWriterBase> writer;
  BatchReceiverBase* receiver = nullptr;  // the writer, as a BatchReceiver<T>
};

// Knows the record type of one edge: creates its writers and the adapter that
// delivers its batches at the consumer.
class EdgeFactory {
 public:
  virtual ~EdgeFactory() = default;
  // `partitioning` is the edge's, with kDefault already resolved.
  virtual CreatedWriter create_writer(WriterSetup setup, Partitioning partitioning,
                                      int producer_index, int max_parallelism) const = 0;
  virtual const InputAdapter& input_adapter() const = 0;
  // The record type, as the compiler names it: part of the plan fingerprint.
  virtual std::string record_type() const = 0;
  // A batch of this edge's records as bytes, and back, for channels that
  // cross processes. decode() throws SerializationError for bad bytes.
  virtual void encode(const BatchBase& batch, Writer& out) const = 0;
  virtual std::unique_ptr<BatchBase> decode(std::string_view bytes) const = 0;
  // Moves the back half of `batch`'s records into a new batch, leaving the
  // front half: a sender cuts a batch whose bytes exceed a frame this way.
  // `batch` holds at least 2 records, so both halves hold some.
  virtual std::unique_ptr<BatchBase> split_off_back_half(BatchBase& batch) const = 0;
};

// Forward, rebalance and broadcast edges of records of type T.
template <class T>
class TypedEdgeFactory : public EdgeFactory {
 public:
  CreatedWriter create_writer(WriterSetup setup, Partitioning partitioning, int producer_index,
                              int max_parallelism) const override {
    switch (partitioning) {
      case Partitioning::kForward:
        return wrap(std::make_unique<PartitionedWriter<T, ForwardSelector>>(std::move(setup),
                                                                            ForwardSelector{}));
      case Partitioning::kBroadcast:
        return wrap(std::make_unique<BroadcastWriter<T>>(std::move(setup)));
      case Partitioning::kRebalance:
        return wrap(std::make_unique<PartitionedWriter<T, RoundRobinSelector>>(
            std::move(setup), RoundRobinSelector(producer_index)));
      default:
        return create_special_writer(std::move(setup), partitioning, max_parallelism);
    }
  }
  const InputAdapter& input_adapter() const override { return adapter_; }
  std::string record_type() const override { return typeid(T).name(); }
  void encode(const BatchBase& batch, Writer& out) const override {
    out.write(static_cast<const Batch<T>&>(batch).records);
  }
  std::unique_ptr<BatchBase> decode(std::string_view bytes) const override {
    return std::make_unique<Batch<T>>(deserialize<std::vector<T>>(bytes));
  }
  std::unique_ptr<BatchBase> split_off_back_half(BatchBase& batch) const override {
    auto& records = static_cast<Batch<T>&>(batch).records;
    const auto middle = records.begin() + static_cast<std::ptrdiff_t>(records.size() / 2);
    std::vector<T> back(std::make_move_iterator(middle), std::make_move_iterator(records.end()));
    records.erase(middle, records.end());
    return std::make_unique<Batch<T>>(std::move(back));
  }

 protected:
  template <class W>
  static CreatedWriter wrap(std::unique_ptr<W> writer) {
    BatchReceiverBase* receiver = static_cast<BatchReceiver<T>*>(writer.get());
    return CreatedWriter{std::move(writer), receiver};
  }
  virtual CreatedWriter create_special_writer(WriterSetup, Partitioning partitioning, int) const {
    throw std::logic_error(std::string("edge cannot be partitioned by ") + to_string(partitioning));
  }

 private:
  TypedInputAdapter<T> adapter_;
};

// key_by edges.
template <class T, class KeyFn>
class KeyedEdgeFactory final : public TypedEdgeFactory<T> {
 public:
  explicit KeyedEdgeFactory(KeyFn key_fn) : key_fn_(std::move(key_fn)) {}

 protected:
  CreatedWriter create_special_writer(WriterSetup setup, Partitioning,
                                      int max_parallelism) const override {
    using Selector = KeyGroupSelector<KeyFn>;
    const auto parallelism = static_cast<int>(setup.targets.size());
    return this->wrap(std::make_unique<PartitionedWriter<T, Selector>>(
        std::move(setup), Selector(key_fn_, max_parallelism, parallelism)));
  }

 private:
  KeyFn key_fn_;
};

// partition_custom edges: a copy of the user's partitioner per writer.
template <class T, class P>
class CustomEdgeFactory final : public TypedEdgeFactory<T> {
 public:
  explicit CustomEdgeFactory(P partitioner) : partitioner_(std::move(partitioner)) {}

 protected:
  CreatedWriter create_special_writer(WriterSetup setup, Partitioning, int) const override {
    auto select = [p = partitioner_](const T& record, int n) mutable {
      return static_cast<int>(call_partition(p, record, n));
    };
    return this->wrap(
        std::make_unique<PartitionedWriter<T, decltype(select)>>(std::move(setup), select));
  }

 private:
  P partitioner_;
};

struct LogicalNode {
  int id = 0;
  std::string kind;  // "source", "map", "filter", ...
  std::string name;
  int parallelism = 1;
  Resources resources;
  // Whether the program asked for `resources`. Only then are they reserved
  // on the node; otherwise an instance needs a node with a CPU but holds none
  // (as a Ray actor does by default), so small clusters run wide jobs.
  bool reserves_resources = false;
  int num_inputs = 0;  // 0 for sources, 2 for connect
  bool keyed = false;
  // A source that can save and restore its position (always true for other
  // operators); a job with checkpoints needs every source to be. How a source
  // that cannot is made to, in its language's terms (empty: C++'s).
  bool replayable = true;
  std::string how_to_replay;
  std::shared_ptr<const OperatorFactory> factory;
};

struct LogicalEdge {
  int from = 0;
  int to = 0;
  int input_index = 0;  // which input of `to` it feeds
  Partitioning partitioning = Partitioning::kDefault;
  std::shared_ptr<const EdgeFactory> factory;
};

// Shared by an environment and the streams built from it. Built by one thread
// (the program's), then sealed when the job is submitted.
struct LogicalGraph {
  std::string job_name;
  std::vector<LogicalNode> nodes;
  std::vector<LogicalEdge> edges;
  bool sealed = false;

  // Throws InvalidPlanError when the graph was already submitted.
  void require_open() const {
    if (sealed) {
      throw InvalidPlanError("environment '" + job_name +
                             "' has already run its job; a stream cannot be extended after "
                             "submit()/execute(): build a new environment for a new job");
    }
  }
};

// Throws InvalidPlanError unless both streams belong to the same environment.
inline void require_same_graph(const LogicalGraph& a, const LogicalGraph& b) {
  if (&a != &b) {
    throw InvalidPlanError("streams of environments '" + a.job_name + "' and '" + b.job_name +
                           "' cannot be combined; build the whole dataflow in one environment");
  }
}

}  // namespace sage::detail
