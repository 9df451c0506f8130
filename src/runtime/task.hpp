// A task: one parallel instance of a chain, run by one thread. It opens its
// operators, feeds them (from the source, or from its input queue), flushes
// partly filled output batches when they have lingered, and at the end of all
// input finishes its operators head first and ends its output channels.
//
// With checkpoints on (runtime/task_checkpointing.hpp), a source task takes
// its snapshot and sends a barrier downstream when the coordinator triggers
// a checkpoint; any other task aligns the barrier over its input channels: a
// channel that delivered barrier n is held back (its batches buffered, never
// left unread in the shared connection) until n has come on every channel,
// then the task takes its snapshot and forwards the barrier. A task that has
// ended waits for the job's final checkpoint and its commit.
//
// A chain with an asynchronous map (detail::AsyncCalls) is polled after every
// message and whenever a completion wakes the task through its queue; while
// such an operator is full the task takes no input (its queue fills and its
// producers block), and at the end of input it waits for the operator's last
// call before finishing it.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/storage.hpp"
#include "checkpoint/task_snapshot.hpp"
#include "runtime/input_queue.hpp"
#include "runtime/job_control.hpp"
#include "runtime/task_checkpointing.hpp"
#include "sage/detail/batch.hpp"
#include "sage/options.hpp"

namespace sage::runtime {

struct Task {
  // Where each input channel's batches go.
  struct ChannelEnd {
    const detail::InputAdapter* adapter = nullptr;
    detail::BatchReceiverBase* receiver = nullptr;
  };

  Task() = default;
  Task(Task&&) noexcept = default;  // in a vector, which must not try to copy it
  Task& operator=(Task&&) noexcept = default;
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  std::string name;  // the head instance, e.g. "DistMapper[2/4]"
  int chain = 0;     // which chain of the plan, and which instance of it
  int instance = 0;
  bool is_source = false;
  std::vector<std::unique_ptr<detail::Operator>> operators;  // head first
  std::vector<std::unique_ptr<detail::ChannelWriterBase>> writers;
  InputQueue* queue = nullptr;  // channels and checkpoint commands
  std::vector<ChannelEnd> channels;
  TaskCheckpointing* checkpointing = nullptr;  // null: checkpoints are off

  // Runs to the end of input. Throws OperatorError for a failing user
  // function and detail::JobCancelledError when the job is cancelled.
  void run(JobControl& control, const ExecutionConfig& config);

 private:
  // An alignment in progress: checkpoint `id`, the channels that delivered
  // its barrier, and what they sent after it.
  struct Alignment {
    std::uint64_t id = 0;
    std::vector<bool> arrived;
    std::deque<detail::Message> held;
    std::chrono::steady_clock::time_point started;
  };

  checkpoint::TaskKey key() const { return {chain, instance}; }
  void restore();
  void run_source(JobControl& control, const ExecutionConfig& config);
  void run_inputs(const ExecutionConfig& config);
  // A checkpoint command (trigger, complete, abort) while the task runs.
  void on_command(const detail::Message& command);
  void on_barrier(std::uint32_t channel, std::uint64_t id);
  bool aligned() const;
  void end_alignment();
  void decline(std::uint64_t id, const std::string& reason);
  // Snapshot of every operator, barrier `id` downstream, snapshot stored.
  void take_snapshot(std::uint64_t id, std::int64_t alignment_ns, bool forward_barrier);
  void await_final_checkpoint();
  void flush_writers();
  bool writers_pending() const;
  // Flushes the writers if their batches have lingered long enough.
  void flush_lingering(const ExecutionConfig& config);
  // The asynchronous operators: poll them all; whether one is full; the
  // earliest deadline of their calls; wait for a completion, that deadline
  // or the writers' linger; wait until `calls` has nothing left out.
  void poll_async();
  bool async_full() const;
  std::chrono::steady_clock::time_point async_deadline() const;
  void wait_async(const ExecutionConfig& config);
  void drain(detail::AsyncCalls& calls, const ExecutionConfig& config);

  std::vector<bool> ended_;  // per input channel
  std::optional<Alignment> alignment_;
  std::deque<detail::Message> replay_;  // held batches, processed before the queue
  std::uint64_t last_checkpoint_ = 0;   // snapshotted, declined or aborted
  // The last snapshot taken, kept so that the next one reuses its memory.
  checkpoint::TaskSnapshot snapshot_;
  std::vector<detail::AsyncCalls*> async_;
  std::chrono::steady_clock::time_point last_flush_;
};

}  // namespace sage::runtime
