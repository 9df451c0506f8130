// The asynchronous map: a function that starts a call for each record and
// completes it later, from any thread, so that one instance keeps many calls
// in flight (an HTTP service, a database, a model server) instead of waiting
// on each in turn. The engine bounds the calls in flight per instance
// (AsyncOptions::capacity; a full instance stops taking input, which
// backpressures its producers), emits results in input order or as they
// complete, times calls out, and takes the calls still out into checkpoints:
// after a restore their inputs are issued again.
//
//   class Lookup : public sage::AsyncFunction<std::string, Row> {
//    public:
//     void invoke(const std::string& key, sage::AsyncResult<Row> result) override {
//       client_.get(key, [result](Row row) { result.complete(std::move(row)); });
//     }
//     sage::AsyncOptions async_options() const override { return {.capacity = 64}; }
//   };
//   stream.map<Lookup>(sage::Options{.parallelism = 4});
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "sage/functions.hpp"

namespace sage {

namespace detail {
struct AsyncResultAccess;
}

// How the engine runs one instance of an asynchronous map.
struct AsyncOptions {
  // Calls in flight per instance. When that many are out, the instance takes
  // no more input until one completes.
  std::size_t capacity = 32;
  // true: results leave in the order their inputs came; false: as they complete.
  bool ordered = true;
  // Per call, from invoke(); zero means none. A call that runs out of time is
  // handed to AsyncFunction::timeout (by default: fail the job, naming the operator).
  std::chrono::milliseconds timeout{0};
};

// The completion handle of one call. Copyable and cheap; complete() or fail()
// it exactly once, from any thread. Later calls (and any call after the
// engine timed the call out) are ignored.
template <class Out>
class AsyncResult {
 public:
  // Receives the outcome of the call: a value, or an error. The engine makes
  // one per call; a test may make its own.
  using Deliver = std::function<void(std::optional<Out> value, std::exception_ptr error)>;

  explicit AsyncResult(Deliver deliver) : state_(std::make_shared<State>(std::move(deliver))) {}

  void complete(Out value) const {
    if (claim()) state_->deliver(std::optional<Out>(std::move(value)), nullptr);
  }
  void fail(std::exception_ptr error) const {
    if (claim()) state_->deliver(std::nullopt, std::move(error));
  }
  void fail(const std::string& message) const {
    fail(std::make_exception_ptr(std::runtime_error(message)));
  }
  // Whether the call has been completed, failed or timed out.
  bool done() const { return state_->done.load(std::memory_order_acquire); }

 private:
  friend struct detail::AsyncResultAccess;  // the engine claims a call it times out
  struct State {
    explicit State(Deliver d) : deliver(std::move(d)) {}
    Deliver deliver;
    std::atomic<bool> done{false};
  };
  bool claim() const { return !state_->done.exchange(true, std::memory_order_acq_rel); }

  std::shared_ptr<State> state_;
};

// Base class of an asynchronous map function from In to Out. open() and
// close() run on the instance's task thread as for any function; close()
// comes after every call has completed.
template <class In, class Out>
class AsyncFunction : public Function {
 public:
  using input_type = In;
  using output_type = Out;

  // Starts the call for one record and returns without waiting for it.
  // Runs on the task thread; must not block for long.
  virtual void invoke(const In& record, AsyncResult<Out> result) = 0;

  // Called on the task thread when a call outlives AsyncOptions::timeout. The
  // default fails the job; an override may complete the result with a
  // fallback instead.
  virtual void timeout(const In& /*record*/, AsyncResult<Out> result) {
    result.fail("asynchronous call timed out; raise AsyncOptions::timeout or override timeout()");
  }

  // Capacity, ordering and timeout of this function's instances.
  virtual AsyncOptions async_options() const { return {}; }
};

}  // namespace sage
