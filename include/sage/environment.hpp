// Environments: where a dataflow is built and how it is run. An environment
// owns one job: build the dataflow from its sources, then submit() or
// execute() it once. LocalEnvironment runs every instance on threads of the
// calling process.
#pragma once

#include <initializer_list>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <vector>

#include "sage/data_stream.hpp"
#include "sage/job_result.hpp"
#include "sage/options.hpp"

namespace sage {

namespace detail {

// Emits the elements of a shared vector; instance i of p takes i, i+p, ...
template <class T>
class CollectionSource {
 public:
  explicit CollectionSource(std::shared_ptr<const std::vector<T>> values)
      : values_(std::move(values)) {}
  void open(RuntimeContext& ctx) {
    next_ = static_cast<std::size_t>(ctx.parallel_index());
    step_ = static_cast<std::size_t>(ctx.parallelism());
  }
  std::optional<T> next() {
    if (next_ >= values_->size()) return std::nullopt;
    std::optional<T> value((*values_)[next_]);
    next_ += step_;
    return value;
  }
  void save_state(Writer& out) const { out.write(static_cast<std::uint64_t>(next_)); }
  void restore_state(Reader& in) { next_ = static_cast<std::size_t>(in.read<std::uint64_t>()); }

 private:
  std::shared_ptr<const std::vector<T>> values_;
  std::size_t next_ = 0, step_ = 1;
};

// Emits begin, begin+1, ..., end-1; instance i of p takes begin+i, begin+i+p, ...
class SequenceSource {
 public:
  SequenceSource(long long begin, long long end) : next_(begin), end_(end) {}
  void open(RuntimeContext& ctx) {
    next_ += ctx.parallel_index();
    step_ = ctx.parallelism();
  }
  std::optional<long long> next() {
    if (next_ >= end_) return std::nullopt;
    const long long value = next_;
    next_ += step_;
    return value;
  }
  bool next_batch(std::vector<long long>& out, std::size_t max) {
    for (std::size_t n = 0; n < max && next_ < end_; ++n, next_ += step_) out.push_back(next_);
    return next_ < end_;
  }
  void save_state(Writer& out) const { out.write(next_); }
  void restore_state(Reader& in) { next_ = in.read<long long>(); }

 private:
  long long next_, end_, step_ = 1;
};

// from_batch over a function: replayed by calling a fresh copy again and
// skipping the records the checkpoint covers, so the function must return
// the same records in the same order every time it runs (as SAGE's batch
// functions over a file or a list do).
template <class F>
class ReplayedBatchFunction {
 public:
  explicit ReplayedBatchFunction(F function) : function_(std::move(function)) {}
  void open(RuntimeContext& ctx) { open_function(function_, ctx); }
  void close() { close_function(function_); }
  auto next() {
    auto value = call_next(function_);
    if (value) ++emitted_;
    return value;
  }
  void save_state(Writer& out) const { out.write(emitted_); }
  void restore_state(Reader& in) {
    const auto covered = in.read<std::uint64_t>();
    while (emitted_ < covered) {
      if (!next()) {
        throw Error("from_batch: the batch function ended after " + std::to_string(emitted_) +
                    " records on replay, but the checkpoint covers " + std::to_string(covered) +
                    "; a batch function must return the same records every time it runs");
      }
    }
  }

 private:
  F function_;
  std::uint64_t emitted_ = 0;
};

// String literals become std::string records: a pointer cannot cross processes.
template <class V>
using CollectionElement = std::conditional_t<std::is_same_v<std::decay_t<V>, const char*> ||
                                                 std::is_same_v<std::decay_t<V>, char*>,
                                             std::string, V>;

template <class F>
concept SourceFunction = Callable_next<F> && requires {
  typename SourceElement<F>;
};

// A source class that can be built from Args.
template <class C, class... Args>
concept SourceClass = std::constructible_from<C, Args...> && SourceFunction<C>;

}  // namespace detail

class Environment {
 public:
  Environment(std::string name, ExecutionConfig config);
  virtual ~Environment();
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

  const std::string& name() const { return graph_->job_name; }
  const ExecutionConfig& config() const { return config_; }

  // A bounded source over the elements of a container or range (copied now).
  template <class... NoExplicitArgs, std::ranges::input_range R>
  auto from_collection(R&& values, Options options = {}) requires(sizeof...(NoExplicitArgs) == 0) {
    using T = detail::CollectionElement<std::ranges::range_value_t<R>>;
    auto shared = std::make_shared<const std::vector<T>>(std::ranges::begin(values),
                                                         std::ranges::end(values));
    if (options.name.empty()) options.name = "collection";
    return add_source(detail::class_maker<detail::CollectionSource<T>>(std::move(shared)),
                      std::move(options));
  }
  template <class... NoExplicitArgs, class T>
  auto from_collection(std::initializer_list<T> values,
                       Options options = {}) requires(sizeof...(NoExplicitArgs) == 0) {
    return from_collection(std::vector<detail::CollectionElement<T>>(values.begin(), values.end()),
                           std::move(options));
  }
  // A bounded source class constructed per instance: next() returns
  // std::optional<T>, std::nullopt at the end.
  template <class C, class... Args>
  auto from_collection(Args&&... args) requires detail::SourceClass<C, Args...> {
    return add_source(detail::class_maker<C>(std::forward<Args>(args)...), {});
  }
  template <class C, class... Args>
  auto from_collection(Options options, Args&&... args) requires detail::SourceClass<C, Args...> {
    return add_source(detail::class_maker<C>(std::forward<Args>(args)...), std::move(options));
  }

  // A bounded source of the integers [begin, end) as long long, split over its
  // parallel instances without overlap (Flink's fromSequence).
  template <class... NoExplicitArgs>
  auto from_sequence(long long begin, long long end,
                     Options options = {}) requires(sizeof...(NoExplicitArgs) == 0) {
    if (options.name.empty()) options.name = "sequence";
    return add_source(detail::class_maker<detail::SequenceSource>(begin, end), std::move(options));
  }

  // A source, bounded or not: a callable or class whose next() returns
  // std::optional<T>; std::nullopt ends the stream. With parallelism p, every
  // instance runs its own copy (use RuntimeContext::parallel_index() to split).
  template <class... NoExplicitArgs, class F>
  auto from_source(F source, Options options = {}) requires(sizeof...(NoExplicitArgs) == 0 &&
                                                            detail::SourceFunction<F>) {
    return add_source(detail::copy_maker(std::move(source)), std::move(options));
  }
  template <class C, class... Args>
  auto from_source(Args&&... args) requires detail::SourceClass<C, Args...> {
    return add_source(detail::class_maker<C>(std::forward<Args>(args)...), {});
  }
  template <class C, class... Args>
  auto from_source(Options options, Args&&... args) requires detail::SourceClass<C, Args...> {
    return add_source(detail::class_maker<C>(std::forward<Args>(args)...), std::move(options));
  }

  // A bounded source over a range, or over a batch function called until it
  // returns std::nullopt.
  template <class... NoExplicitArgs, class Input>
  auto from_batch(Input&& input, Options options = {}) requires(sizeof...(NoExplicitArgs) == 0) {
    if (options.name.empty()) options.name = "batch";
    if constexpr (std::ranges::input_range<Input>) {
      return from_collection(std::forward<Input>(input), std::move(options));
    } else {
      static_assert(detail::SourceFunction<std::decay_t<Input>>,
                    "sage: from_batch takes a range, or a function returning std::optional<T>");
      return add_source(detail::copy_maker(detail::ReplayedBatchFunction<std::decay_t<Input>>(
                            std::decay_t<Input>(std::forward<Input>(input)))),
                        std::move(options));
    }
  }

  // Starts the job. With autostop, returns once every bounded source is
  // exhausted and every record processed, and throws JobFailedError if the
  // job failed; without, returns at once and the job runs until stop() or its
  // sources end. Returns the job id. An environment runs one job.
  virtual std::string submit(bool autostop = false) = 0;
  // Waits for the job to end and returns its result (throws JobFailedError
  // if it failed).
  virtual JobResult wait() = 0;
  // Ends the job: sources stop, records in flight are processed, and wait()
  // reports JobState::kStopped.
  virtual void stop() = 0;
  // submit(true) and the result.
  JobResult execute();

 protected:
  // Marks the graph submitted: later changes to the dataflow throw.
  void seal();
  std::shared_ptr<detail::LogicalGraph> graph_;
  ExecutionConfig config_;

 private:
  template <class Make>
  auto add_source(Make make, Options options) {
    using S = detail::Made<Make>;
    using T = detail::SourceElement<S>;
    if (options.name.empty()) options.name = "source";
    auto stream = detail::attach_operator<T>(
        *graph_, "source", options, 1, false, {}, [make](detail::OperatorSetup& setup) {
          return std::make_unique<detail::SourceOperatorImpl<T, S>>(make, setup);
        });
    graph_->nodes[stream.front().node].replayable = detail::HasCheckpointedState<S>;
    return DataStream<T>(graph_, std::move(stream));
  }
};

namespace runtime {
class ProcessJob;
class LocalCheckpoints;
}  // namespace runtime

// Runs the job inside this process, each parallel instance on its own thread.
class LocalEnvironment : public Environment {
 public:
  explicit LocalEnvironment(std::string name = "sage-job", ExecutionConfig config = {});
  ~LocalEnvironment() override;  // stops a job still running and waits for it

  std::string submit(bool autostop = false) override;
  JobResult wait() override;
  void stop() override;

 private:
  std::unique_ptr<runtime::ProcessJob> job_;
  std::unique_ptr<runtime::LocalCheckpoints> checkpoints_;  // with checkpoint_interval set
  std::optional<JobResult> result_;                         // once the job ended
};

}  // namespace sage
