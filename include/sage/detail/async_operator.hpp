// The operator of the asynchronous map (sage/async_function.hpp): it starts a
// call per record through AsyncFunction::invoke, keeps at most
// AsyncOptions::capacity of them per instance, and emits their results from
// the task's thread, in input order or as they complete. Completions arrive
// on any thread in an inbox the operator shares with every AsyncResult it
// handed out; the inbox wakes the task, which then polls the operator
// (AsyncCalls in batch.hpp). The operator detaches from the inbox when it is
// destroyed, so that a call completing after the job was cancelled finds
// nobody to deliver to and is dropped safely.
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "sage/async_function.hpp"
#include "sage/detail/operators.hpp"

namespace sage::detail {

// The engine's side of AsyncResult: it claims a call it times out, so that
// the call's own completion, should it still come, is ignored.
struct AsyncResultAccess {
  template <class Out>
  static bool claim(const AsyncResult<Out>& result) {
    return result.claim();
  }
};

// Where the calls of one operator instance deliver their outcomes, from any
// thread. Shared by the operator and the results it handed out, it may
// outlive the operator: after detach() deliveries are dropped.
template <class Out>
class AsyncInbox {
 public:
  struct Completion {
    std::uint64_t call = 0;
    std::optional<Out> value;
    std::exception_ptr error;
  };

  explicit AsyncInbox(TaskWaker* waker) : waker_(waker) {}

  void deliver(Completion completion) {
    std::lock_guard lock(mutex_);
    if (detached_) return;
    completions_.push_back(std::move(completion));
    ready_.store(true, std::memory_order_release);
    // Under the lock: once detach() returns, the waker is never used again.
    if (waker_ != nullptr) waker_->wake();
  }
  // Whether completions wait; a cheap check for the task's every poll.
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  // Moves the waiting completions into `out` (empty).
  void take(std::vector<Completion>& out) {
    std::lock_guard lock(mutex_);
    out.swap(completions_);
    ready_.store(false, std::memory_order_relaxed);
  }
  void detach() {
    std::lock_guard lock(mutex_);
    detached_ = true;
    completions_.clear();
  }

 private:
  std::mutex mutex_;
  std::vector<Completion> completions_;
  std::atomic<bool> ready_{false};
  bool detached_ = false;
  TaskWaker* waker_;
};

// Refuses options no instance could run with.
inline void check_async_options(const AsyncOptions& options) {
  if (options.capacity == 0) {
    throw std::invalid_argument(
        "AsyncOptions::capacity is 0; give at least 1 (the calls in flight per instance)");
  }
  if (options.timeout.count() < 0) {
    throw std::invalid_argument("AsyncOptions::timeout is negative; give 0 (none) or a duration");
  }
}

template <class In, class Out, class F, class KeyPolicy>
class AsyncMapOperator final : public SingleInputOperator<In, F, KeyPolicy>, private AsyncCalls {
  using Base = SingleInputOperator<In, F, KeyPolicy>;
  using Clock = std::chrono::steady_clock;
  using Inbox = AsyncInbox<Out>;

 public:
  template <class Make>
  AsyncMapOperator(const Make& make, KeyPolicy key, OperatorSetup& setup)
      : Base(make, std::move(key), setup),
        output_(setup),
        batch_size_(setup.config->batch_size),
        inbox_(std::make_shared<Inbox>(setup.waker)),
        in_flight_(setup.metrics->user.gauge("async_in_flight")),
        completed_(setup.metrics->user.counter("async_completed")),
        failed_(setup.metrics->user.counter("async_failed")),
        timed_out_(setup.metrics->user.counter("async_timed_out")),
        latency_(setup.metrics->user.histogram("async_latency_seconds")) {}
  ~AsyncMapOperator() override { inbox_->detach(); }
  AsyncMapOperator(const AsyncMapOperator&) = delete;
  AsyncMapOperator& operator=(const AsyncMapOperator&) = delete;

  void open() override {
    this->open_function();
    run_user_code(this->ctx_, *this->metrics_, [&] {
      options_ = this->function_.async_options();
      check_async_options(options_);
    });
  }
  void finish() override {
    if (!idle()) throw std::logic_error("an asynchronous map finished with calls still out");
    this->close_function();
  }
  AsyncCalls* async_calls() override { return this; }

  // Issues what there is room for; the rest waits (and the task takes no
  // more input until it has gone out).
  void receive(std::vector<In>& batch) override {
    this->metrics_->add(this->metrics_->records_in, batch.size());
    ScopedTimer timer(this->metrics_->busy_ns);
    run_user_code(this->ctx_, *this->metrics_, [&] {
      for (In& record : batch) {
        if (waiting_.empty() && calls_.size() < options_.capacity) {
          issue(std::move(record));
        } else {
          waiting_.push_back(std::move(record));
        }
      }
    });
  }

  // The inputs of the calls out (and, ordered, of results not emitted yet)
  // and of the inputs waiting, in input order: a restore issues them again.
  void snapshot(OperatorSnapshot& out, std::uint64_t checkpoint_id) override {
    Base::snapshot(out, checkpoint_id);
    Writer writer;
    writer.write_varint(calls_.size() + waiting_.size());
    for (const auto& [id, call] : calls_) writer.write(call.input);
    for (const In& input : waiting_) writer.write(input);
    out.pending_calls = writer.take();
  }
  void restore(const OperatorSnapshot& in) override {
    Base::restore(in);
    if (!in.pending_calls) return;
    Reader reader(*in.pending_calls);
    const std::size_t count = reader.read_count(0);
    for (std::size_t i = 0; i < count; ++i) waiting_.push_back(reader.read<In>());
  }

  void poll() override {
    {
      ScopedTimer timer(this->metrics_->busy_ns);
      run_user_code(this->ctx_, *this->metrics_, [&] {
        // An invoke() may complete its call at once: then there is room again.
        do {
          if (!deadlines_.empty()) expire(Clock::now());
          if (inbox_->ready()) take_completions();
          issue_waiting();
        } while (inbox_->ready());
      });
    }
    emit();
  }
  bool full() const override { return !waiting_.empty() || calls_.size() >= options_.capacity; }
  bool idle() const override { return calls_.empty() && waiting_.empty(); }
  Clock::time_point deadline() const override {
    return deadlines_.empty() ? Clock::time_point::max() : deadlines_.begin()->first;
  }

 private:
  struct Call {
    In input;
    AsyncResult<Out> result;
    Clock::time_point started;
    Clock::time_point deadline;  // max(): none
    bool handed_to_timeout = false;
    std::optional<Out> value;  // completed, behind an earlier call (ordered)
  };

  AsyncResult<Out> result_for(std::uint64_t id) {
    return AsyncResult<Out>([inbox = inbox_, id](std::optional<Out> value, std::exception_ptr e) {
      inbox->deliver({id, std::move(value), std::move(e)});
    });
  }

  Clock::time_point deadline_from(Clock::time_point now) const {
    return options_.timeout.count() > 0 ? now + options_.timeout : Clock::time_point::max();
  }

  void issue(In input) {
    const std::uint64_t id = next_call_++;
    const auto now = Clock::now();
    Call& call = calls_.emplace(id, Call{std::move(input), result_for(id), now, deadline_from(now)})
                     .first->second;
    if (call.deadline != Clock::time_point::max()) deadlines_.emplace(call.deadline, id);
    ++out_calls_;
    in_flight_.set(static_cast<double>(out_calls_));
    this->key_.select_record(call.input);
    this->function_.invoke(call.input, call.result);
    this->key_.clear();
  }

  void issue_waiting() {
    while (!waiting_.empty() && calls_.size() < options_.capacity) {
      In input = std::move(waiting_.front());
      waiting_.pop_front();
      issue(std::move(input));
    }
  }

  // Hands each call past its deadline to the function's timeout(), with a
  // fresh result; one that outlives a second timeout fails the job.
  void expire(Clock::time_point now) {
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      const std::uint64_t id = deadlines_.begin()->second;
      deadlines_.erase(deadlines_.begin());
      Call& call = calls_.at(id);
      // Completed just now: its completion is in the inbox.
      if (!AsyncResultAccess::claim(call.result)) continue;
      timed_out_.inc();
      if (call.handed_to_timeout) {
        throw std::runtime_error(
            "an asynchronous call was still not complete " +
            std::to_string(options_.timeout.count()) +
            " ms after timeout() was handed it; timeout() must complete or fail its result");
      }
      call.handed_to_timeout = true;
      call.result = result_for(id);
      call.deadline = deadline_from(now);
      deadlines_.emplace(call.deadline, id);
      this->key_.select_record(call.input);
      this->function_.timeout(call.input, call.result);
      this->key_.clear();
    }
  }

  void take_completions() {
    inbox_->take(taken_);
    const auto now = Clock::now();
    for (auto& completion : taken_) {
      const auto it = calls_.find(completion.call);
      if (it == calls_.end()) continue;  // not one of this instance's calls any more
      Call& call = it->second;
      if (completion.error) {
        failed_.inc();
        std::rethrow_exception(completion.error);
      }
      completed_.inc();
      latency_.record(std::chrono::duration<double>(now - call.started).count());
      if (call.deadline != Clock::time_point::max()) deadlines_.erase({call.deadline, it->first});
      --out_calls_;
      if (options_.ordered) {
        call.value = std::move(completion.value);
      } else {
        out_.push_back(std::move(*completion.value));
        calls_.erase(it);
      }
      if (out_.size() >= batch_size_) emit();
    }
    taken_.clear();
    while (options_.ordered && !calls_.empty() && calls_.begin()->second.value) {
      out_.push_back(std::move(*calls_.begin()->second.value));
      calls_.erase(calls_.begin());
      if (out_.size() >= batch_size_) emit();
    }
    in_flight_.set(static_cast<double>(out_calls_));
  }

  void emit() {
    output_.emit(out_);
    out_.clear();
  }

  Output<Out> output_;
  std::size_t batch_size_;
  AsyncOptions options_;
  std::shared_ptr<Inbox> inbox_;
  // Calls by id (ids rise in input order): those out and, ordered, those
  // completed behind an earlier one. At most options_.capacity.
  std::map<std::uint64_t, Call> calls_;
  std::set<std::pair<Clock::time_point, std::uint64_t>> deadlines_;
  std::deque<In> waiting_;  // taken in, not issued yet: no room, or restored
  std::uint64_t next_call_ = 0;
  std::size_t out_calls_ = 0;  // calls without an outcome yet
  std::vector<typename Inbox::Completion> taken_;
  std::vector<Out> out_;
  Gauge& in_flight_;
  Counter& completed_;
  Counter& failed_;
  Counter& timed_out_;
  Histogram& latency_;
};

// An AsyncFunction made of a callable invoked as f(record, result).
template <class In, class Out, class F>
class CallableAsyncFunction final : public AsyncFunction<In, Out> {
 public:
  CallableAsyncFunction(F f, AsyncOptions options) : f_(std::move(f)), options_(options) {}
  void invoke(const In& record, AsyncResult<Out> result) override {
    std::invoke(f_, record, std::move(result));
  }
  AsyncOptions async_options() const override { return options_; }

 private:
  F f_;
  AsyncOptions options_;
};

// A class derived from AsyncFunction<In, Out>.
template <class F>
concept AsyncFunctionClass = requires {
  typename F::input_type;
  typename F::output_type;
}
&&std::derived_from<F, AsyncFunction<typename F::input_type, typename F::output_type>>;

}  // namespace sage::detail
