// The sending side of an edge that is not chained: routes each record to one
// (or, for broadcast, every) consumer instance, gathers records in a batch per
// consumer and pushes full batches into the consumer's channel. A full channel
// blocks the push: that is how backpressure reaches the producer.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "sage/detail/batch.hpp"
#include "sage/detail/instance_metrics.hpp"
#include "sage/stable_hash.hpp"

namespace sage::detail {

// Key groups are the unit in which keyed state is spread over instances: a key
// always belongs to the same group, and a group to the same instance for a
// given parallelism, in every process. A key's group is its hash modulo
// max_parallelism, taken with a mask when that is a power of two (the
// default, 128): the same result without a division per record.
inline int key_group_of(std::uint64_t key_hash, int max_parallelism) {
  const auto groups = static_cast<std::uint64_t>(max_parallelism);
  const bool power_of_two = (groups & (groups - 1)) == 0;
  return static_cast<int>(power_of_two ? key_hash & (groups - 1) : key_hash % groups);
}
inline int instance_of_key_group(int key_group, int max_parallelism, int parallelism) {
  return static_cast<int>(static_cast<std::int64_t>(key_group) * parallelism / max_parallelism);
}

// The instance of a key, for a writer that routes record by record: what
// key_group_of() and instance_of_key_group() give, with what does not depend
// on the key (whether max_parallelism is a power of two, the instance of
// every group) computed once.
class KeyGroupRouting {
 public:
  KeyGroupRouting(int max_parallelism, int parallelism)
      : groups_(static_cast<std::uint64_t>(max_parallelism)),
        power_of_two_((groups_ & (groups_ - 1)) == 0) {
    instance_of_group_.reserve(static_cast<std::size_t>(max_parallelism));
    for (int group = 0; group < max_parallelism; ++group) {
      instance_of_group_.push_back(instance_of_key_group(group, max_parallelism, parallelism));
    }
  }
  int instance_of(std::uint64_t key_hash) const {
    return instance_of_group_[power_of_two_ ? key_hash & (groups_ - 1) : key_hash % groups_];
  }

 private:
  std::uint64_t groups_;  // max_parallelism
  bool power_of_two_;
  std::vector<int> instance_of_group_;
};

// One consumer instance as the writer sees it.
struct ChannelTarget {
  MessageSink* sink = nullptr;
  std::uint32_t channel = 0;  // the channel's index at the consumer
};

// What a writer needs to know about the instance that feeds it.
struct WriterSetup {
  std::vector<ChannelTarget> targets;
  std::size_t batch_size = 1024;
  InstanceMetrics* producer_metrics = nullptr;  // blocked time is charged here
  OperatorError blame;                          // the producing instance, named in routing errors
};

template <class T>
class ChannelWriterCommon : public ChannelWriterBase, public BatchReceiver<T> {
 public:
  explicit ChannelWriterCommon(WriterSetup setup)
      : setup_(std::move(setup)),
        buffers_(setup_.targets.size()),
        recycler_(std::make_shared<BatchRecycler<T>>(
            kSpareBatchesPerTarget * setup_.targets.size() + kSpareBatchesPerTarget)) {
    for (auto& b : buffers_) b.reserve(setup_.batch_size);
  }

  void flush() override {
    for (std::size_t t = 0; t < buffers_.size(); ++t) {
      if (!buffers_[t].empty()) send(t);
    }
  }
  bool has_pending() const override {
    for (const auto& b : buffers_) {
      if (!b.empty()) return true;
    }
    return false;
  }
  void finish() override {
    flush();
    for (const auto& target : setup_.targets) push(target, Message::end_of_stream(target.channel));
  }
  void barrier(std::uint64_t checkpoint) override {
    flush();
    for (const auto& target : setup_.targets) {
      push(target, Message::barrier(target.channel, checkpoint));
    }
  }

 protected:
  void append(std::size_t target, T&& record) {
    buffers_[target].push_back(std::move(record));
    if (buffers_[target].size() >= setup_.batch_size) send(target);
  }
  void append_copy(std::size_t target, const T& record) {
    buffers_[target].push_back(record);
    if (buffers_[target].size() >= setup_.batch_size) send(target);
  }
  std::size_t target_count() const { return buffers_.size(); }
  // Records that every target's batch has room for before it is full.
  std::size_t room() const {
    std::size_t fullest = 0;
    for (const auto& b : buffers_) fullest = std::max(fullest, b.size());
    return setup_.batch_size - fullest;
  }
  // A target's batch being gathered; send_full() sends those that are full.
  std::vector<T>& buffer(std::size_t target) { return buffers_[target]; }
  void send_full() {
    for (std::size_t t = 0; t < buffers_.size(); ++t) {
      if (buffers_[t].size() >= setup_.batch_size) send(t);
    }
  }
  const WriterSetup& setup() const { return setup_; }

 private:
  void send(std::size_t target) {
    std::vector<T> full = recycler_->take(setup_.batch_size);
    full.swap(buffers_[target]);
    const auto& t = setup_.targets[target];
    push(t, Message::of_batch(t.channel, std::make_unique<Batch<T>>(std::move(full), recycler_)));
  }
  void push(const ChannelTarget& target, Message message) {
    BlockedTimer timer(*setup_.producer_metrics);
    target.sink->push(std::move(message));
  }

  // Spare vectors kept for reuse: enough for the batches a consumer takes
  // while its producer waits for room (half its queue), without holding on to
  // memory for every batch that could be in flight.
  static constexpr std::size_t kSpareBatchesPerTarget = 4;

  WriterSetup setup_;
  std::vector<std::vector<T>> buffers_;
  std::shared_ptr<BatchRecycler<T>> recycler_;  // shared with the batches in flight
};

// A selector whose pick is in [0, num_targets) by construction says so with
// `static constexpr bool kAlwaysInRange = true`: the writer then checks no
// pick (a user's partitioner is checked record by record).
template <class S>
concept AlwaysInRange = requires {
  requires S::kAlwaysInRange;
};

// Sends each record to the one target its Selector picks.
// Selector: int operator()(const T&, int num_targets).
template <class T, class Selector>
class PartitionedWriter final : public ChannelWriterCommon<T> {
 public:
  PartitionedWriter(WriterSetup setup, Selector selector)
      : ChannelWriterCommon<T>(std::move(setup)), selector_(std::move(selector)) {}

  void receive(std::vector<T>& batch) override {
    const int n = static_cast<int>(this->target_count());
    T* record = batch.data();
    T* const end = record + batch.size();
    while (record != end) {
      // A run of records that every target's batch has room for: none of
      // them fills a batch, so the loop over them sends nothing and checks
      // no batch's size.
      T* const stop = record + std::min(static_cast<std::size_t>(end - record), this->room());
      for (; record != stop; ++record) {
        const int target = selector_(*record, n);
        if constexpr (!AlwaysInRange<Selector>) {
          if (target < 0 || target >= n) [[unlikely]]
            throw_bad_target(target, n);
        }
        this->buffer(static_cast<std::size_t>(target)).push_back(std::move(*record));
      }
      this->send_full();
    }
  }

 private:
  [[noreturn]] void throw_bad_target(int target, int n) const {
    OperatorError error = this->setup().blame;
    error.message = "partitioner returned index " + std::to_string(target) + " for " +
                    std::to_string(n) + " partitions; partition() must return a value in [0, " +
                    std::to_string(n) + ")";
    throw error;
  }

  Selector selector_;
};

// Sends every record to every target.
template <class T>
class BroadcastWriter final : public ChannelWriterCommon<T> {
 public:
  using ChannelWriterCommon<T>::ChannelWriterCommon;
  void receive(std::vector<T>& batch) override {
    for (const auto& record : batch) {
      for (std::size_t t = 0; t < this->target_count(); ++t) this->append_copy(t, record);
    }
  }
};

struct ForwardSelector {
  static constexpr bool kAlwaysInRange = true;
  template <class T>
  int operator()(const T&, int) const {
    return 0;
  }
};

// Round robin, record by record; each producer instance starts at its own index
// so that small inputs still spread over all consumers.
class RoundRobinSelector {
 public:
  static constexpr bool kAlwaysInRange = true;
  explicit RoundRobinSelector(int start) : next_(start) {}
  template <class T>
  int operator()(const T&, int n) {
    if (next_ >= n) next_ %= n;
    return next_++;
  }

 private:
  int next_;
};

// key_by: each record to the instance of its key's group, among `parallelism`
// instances (the writer's targets).
template <class KeyFn>
class KeyGroupSelector {
 public:
  static constexpr bool kAlwaysInRange = true;  // every group's instance is < parallelism

  KeyGroupSelector(KeyFn key_fn, int max_parallelism, int parallelism)
      : key_fn_(std::move(key_fn)), routing_(max_parallelism, parallelism) {}
  // `n`, the writer's number of targets, is the parallelism given above.
  template <class T>
  int operator()(const T& record, int /*n*/) const {
    return routing_.instance_of(stable_hash(key_fn_(record)));
  }

 private:
  KeyFn key_fn_;
  KeyGroupRouting routing_;
};

}  // namespace sage::detail
