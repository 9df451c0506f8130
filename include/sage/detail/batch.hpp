// The units the engine moves between operator instances, and the type-erased
// interfaces that templated operators and the non-templated runtime share.
// Type erasure happens per batch, never per record.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "sage/error.hpp"

namespace sage::detail {

// A batch of records of some type; the concrete type is Batch<T>.
struct BatchBase {
  virtual ~BatchBase() = default;
  virtual std::size_t size() const = 0;
};

template <class T>
struct Batch final : BatchBase {
  explicit Batch(std::vector<T> r) : records(std::move(r)) {}
  std::size_t size() const override { return records.size(); }
  std::vector<T> records;
};

// What travels on a channel: a batch, or end-of-stream for that channel.
struct Message {
  std::uint32_t channel = 0;         // index of the channel at the consumer task
  std::unique_ptr<BatchBase> batch;  // null means end-of-stream on `channel`
};

// Where a channel writer delivers messages: the consumer's input queue in this
// process, or the network sender of a channel to another process. push()
// blocks while the consumer is full (backpressure) and throws
// JobCancelledError when the job is being torn down.
class MessageSink {
 public:
  virtual ~MessageSink() = default;
  virtual void push(Message message) = 0;
};

// Thrown inside tasks to unwind them when the job is cancelled.
struct JobCancelledError {};

// Thrown by the MessageSink of a consumer in another process that can no
// longer be reached: its connection broke or was refused. Most often that
// process failed first, so a task that meets this fails as a consequence,
// and the other process's error is the job's.
class PeerLostError : public Error {
 public:
  using Error::Error;
};

// Receives batches of T: an operator's input port, or a channel writer.
// receive() may reorder, move from or shrink the batch: the caller reuses it.
class BatchReceiverBase {
 public:
  virtual ~BatchReceiverBase() = default;
};

template <class T>
class BatchReceiver : public BatchReceiverBase {
 public:
  virtual void receive(std::vector<T>& batch) = 0;
};

// One operator instance inside a chain. The task opens all operators before
// the first record, and finishes them head first once all input has ended:
// finish() emits what the operator still holds and calls the user's close().
class Operator {
 public:
  virtual ~Operator() = default;
  virtual void open() = 0;
  virtual void finish() = 0;
  // Input port `index` (0, or 1 for the second input of a two-input operator).
  virtual BatchReceiverBase& input(int index) = 0;
};

// The head of a source chain: pulls records from the user's source.
class SourceOperator : public Operator {
 public:
  // Emits up to `max_records` records downstream, fewer if `deadline` passes
  // first (so that a slow source does not hold records back); false once the
  // source has ended.
  virtual bool produce(std::size_t max_records, std::chrono::steady_clock::time_point deadline) = 0;
};

// The outgoing side of an edge that is not chained: routes records to the
// channels of the consumer instances, in batches.
class ChannelWriterBase {
 public:
  virtual ~ChannelWriterBase() = default;
  // Sends partly filled batches now (linger expired or the task is idle).
  virtual void flush() = 0;
  virtual bool has_pending() const = 0;
  // Sends what is left, then end-of-stream on every channel.
  virtual void finish() = 0;
};

// Hands a received batch of an edge's type to the operator input it feeds.
class InputAdapter {
 public:
  virtual ~InputAdapter() = default;
  virtual void deliver(BatchBase& batch, BatchReceiverBase& receiver) const = 0;
};

template <class T>
class TypedInputAdapter final : public InputAdapter {
 public:
  void deliver(BatchBase& batch, BatchReceiverBase& receiver) const override {
    static_cast<BatchReceiver<T>&>(receiver).receive(static_cast<Batch<T>&>(batch).records);
  }
};

}  // namespace sage::detail
