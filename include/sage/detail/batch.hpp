// The units the engine moves between operator instances, and the type-erased
// interfaces that templated operators and the non-templated runtime share.
// Type erasure happens per batch, never per record.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "sage/error.hpp"
#include "sage/serialization.hpp"

namespace sage::detail {

// A batch of records of some type; the concrete type is Batch<T>.
struct BatchBase {
  virtual ~BatchBase() = default;
  virtual std::size_t size() const = 0;
};

// Spare record vectors of one channel writer, empty with their capacity kept:
// a batch gives its vector back when the consumer is done with it (on the
// consumer's thread), and the writer gathers its next batch in it. Batches
// then cost no allocation, and their memory is still in cache when reused.
template <class T>
class BatchRecycler {
 public:
  explicit BatchRecycler(std::size_t max_spare) : max_spare_(max_spare) {}

  // An empty vector with room for `capacity` records.
  std::vector<T> take(std::size_t capacity) {
    std::vector<T> v;
    {
      std::lock_guard lock(mutex_);
      if (!spare_.empty()) {
        v = std::move(spare_.back());
        spare_.pop_back();
      }
    }
    v.reserve(capacity);
    return v;
  }
  void give(std::vector<T>&& v) {
    v.clear();
    std::lock_guard lock(mutex_);
    if (spare_.size() < max_spare_) spare_.push_back(std::move(v));
  }

 private:
  const std::size_t max_spare_;
  std::mutex mutex_;
  std::vector<std::vector<T>> spare_;
};

template <class T>
struct Batch final : BatchBase {
  explicit Batch(std::vector<T> r, std::shared_ptr<BatchRecycler<T>> recycler = nullptr)
      : records(std::move(r)), recycler_(std::move(recycler)) {}
  ~Batch() override {
    if (recycler_ && records.capacity() != 0) recycler_->give(std::move(records));
  }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  std::size_t size() const override { return records.size(); }
  std::vector<T> records;

 private:
  std::shared_ptr<BatchRecycler<T>> recycler_;
};

// What travels on a channel (a batch, a checkpoint barrier, end-of-stream),
// or, posted to a task's queue by the engine, a checkpoint command for the
// task itself (channel unused).
struct Message {
  enum class Kind : std::uint8_t {
    kBatch,
    kEndOfStream,
    kBarrier,             // checkpoint `checkpoint`: all records before it are in it
    kTriggerCheckpoint,   // a source task: snapshot and send barrier `checkpoint` now
    kFinalCheckpoint,     // an ended task: its last snapshot, for final checkpoint `checkpoint`
    kCheckpointComplete,  // every task stored `checkpoint`: commit what it covers
    kCheckpointAborted,   // `checkpoint` will not complete: stop aligning for it
  };
  Kind kind = Kind::kBatch;
  std::uint32_t channel = 0;  // index of the channel at the consumer task
  std::unique_ptr<BatchBase> batch;
  std::uint64_t checkpoint = 0;

  static Message of_batch(std::uint32_t channel, std::unique_ptr<BatchBase> batch) {
    return Message{Kind::kBatch, channel, std::move(batch), 0};
  }
  static Message end_of_stream(std::uint32_t channel) {
    return Message{Kind::kEndOfStream, channel, nullptr, 0};
  }
  static Message barrier(std::uint32_t channel, std::uint64_t checkpoint) {
    return Message{Kind::kBarrier, channel, nullptr, checkpoint};
  }
  static Message command(Kind kind, std::uint64_t checkpoint) {
    return Message{kind, 0, nullptr, checkpoint};
  }
  // Carried on a channel (as opposed to a command for the task).
  bool on_channel() const {
    return kind == Kind::kBatch || kind == Kind::kEndOfStream || kind == Kind::kBarrier;
  }
};

// One operator instance's part of a checkpoint.
struct OperatorSnapshot {
  // What the user's function wrote in save_state(), if it has one.
  std::optional<std::string> function_state;
  // Keyed state by key group (of ExecutionConfig::max_parallelism): only
  // non-empty groups, so that a restore reads just the groups it owns.
  std::map<int, std::string> key_groups;
  // An asynchronous map's inputs whose results it had not emitted, in input
  // order: issued again after a restore.
  std::optional<std::string> pending_calls;
  SAGE_FIELDS(function_state, key_groups, pending_calls)
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

// How an operator whose calls complete on other threads (the asynchronous
// map) makes its task look at them: wake() from any thread ends the task's
// wait for input, or for room among the operator's calls. The task's input
// queue implements it.
class TaskWaker {
 public:
  virtual ~TaskWaker() = default;
  virtual void wake() = 0;
};

// The calls in flight of an asynchronous operator, as its task drives them,
// all on the task's thread. The task polls after every message and whenever
// woken; it takes no input while full(), and before it finishes the
// operator it waits until idle().
class AsyncCalls {
 public:
  virtual ~AsyncCalls() = default;
  // Emits the results that completed (in order, if ordered), hands the calls
  // that timed out to the function, and issues waiting inputs while there is
  // room. Throws OperatorError for a call that failed.
  virtual void poll() = 0;
  // No room for another call: the task must not feed it input.
  virtual bool full() const = 0;
  // No call out and no result or input waiting.
  virtual bool idle() const = 0;
  // When poll() must run next at the latest (the earliest timeout), or
  // time_point::max().
  virtual std::chrono::steady_clock::time_point deadline() const = 0;
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

  // Checkpoints, all on the task's thread. snapshot(): the instance's state
  // at a barrier (its function's save_state and its keyed state). restore():
  // after open() and before the first record, when the job restarts from a
  // checkpoint. notify_checkpoint_complete(): every task stored the checkpoint.
  virtual void snapshot(OperatorSnapshot& out, std::uint64_t checkpoint_id) = 0;
  virtual void restore(const OperatorSnapshot& in) = 0;
  virtual void notify_checkpoint_complete(std::uint64_t checkpoint_id) = 0;

  // An asynchronous operator's calls; null for every other operator.
  virtual AsyncCalls* async_calls() { return nullptr; }
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
  // Sends what is left, then barrier `checkpoint` on every channel.
  virtual void barrier(std::uint64_t checkpoint) = 0;
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
