#include "runtime/task.hpp"

#include <algorithm>
#include <chrono>

#include "checkpoint/task_snapshot.hpp"

namespace sage::runtime {

using Clock = std::chrono::steady_clock;
using Kind = detail::Message::Kind;

void Task::run(JobControl& control, const ExecutionConfig& config) {
  // Open downstream operators first, so each is ready before records reach it.
  for (auto it = operators.rbegin(); it != operators.rend(); ++it) (*it)->open();
  for (auto& op : operators) {
    if (auto* calls = op->async_calls()) async_.push_back(calls);
  }
  if (checkpointing != nullptr) restore();
  last_flush_ = Clock::now();
  if (is_source) {
    run_source(control, config);
  } else {
    run_inputs(config);
  }
  for (auto& op : operators) {
    if (auto* calls = op->async_calls()) drain(*calls, config);
    op->finish();
  }
  for (auto& writer : writers) writer->finish();
  if (checkpointing != nullptr) await_final_checkpoint();
}

void Task::restore() {
  const auto bytes = checkpointing->restore_bytes(key());
  if (!bytes) return;
  checkpoint::TaskSnapshot snapshot = checkpoint::decode_task_snapshot(*bytes);
  if (snapshot.operators.size() != operators.size()) {
    throw Error("its snapshot holds " + std::to_string(snapshot.operators.size()) +
                " operators, its chain has " + std::to_string(operators.size()) +
                " (a checkpoint of another program?)");
  }
  for (std::size_t i = 0; i < operators.size(); ++i) operators[i]->restore(snapshot.operators[i]);
}

void Task::run_source(JobControl& control, const ExecutionConfig& config) {
  auto& source = static_cast<detail::SourceOperator&>(*operators.front());
  bool more = true;
  detail::Message command;
  while (more && !control.stop_requested()) {
    if (control.cancelled()) throw detail::JobCancelledError{};
    while (checkpointing != nullptr && queue->try_pop(command)) on_command(command);
    if (!async_.empty()) {
      poll_async();
      if (async_full()) {
        wait_async(config);
        continue;
      }
    }
    const auto now = Clock::now();
    more = source.produce(config.batch_size, now + config.linger);
    flush_lingering(config);
  }
}

void Task::run_inputs(const ExecutionConfig& config) {
  ended_.assign(channels.size(), false);
  std::size_t open_channels = channels.size();
  detail::Message message;
  // Batches held back for an input that has ended are replayed after its end.
  while (open_channels > 0 || !replay_.empty()) {
    if (!async_.empty()) {
      poll_async();
      if (async_full()) {
        wait_async(config);
        continue;
      }
    }
    if (!replay_.empty()) {
      message = std::move(replay_.front());
      replay_.pop_front();
    } else {
      auto deadline = async_deadline();
      if (writers_pending()) deadline = std::min(deadline, last_flush_ + config.linger);
      if (deadline == Clock::time_point::max() && async_.empty()) {
        queue->pop(message);
      } else if (!queue->pop_until(message, deadline)) {
        // The writers' linger, a call's deadline or a completion.
        flush_lingering(config);
        continue;
      }
    }
    switch (message.kind) {
      case Kind::kBatch: {
        // At-least-once holds nothing back: records after a barrier may
        // then be in the snapshot and replayed after a restart as well.
        if (alignment_ && alignment_->arrived[message.channel] &&
            checkpointing->mode() == CheckpointMode::kExactlyOnce) {
          alignment_->held.push_back(std::move(message));
          if (alignment_->held.size() > checkpointing->alignment_buffer_batches()) {
            decline(alignment_->id,
                    "aligning its inputs held back more than alignment_buffer_batches (" +
                        std::to_string(checkpointing->alignment_buffer_batches()) +
                        ") batches; a slow input or skewed barriers (raise the limit, or use "
                        "CheckpointMode::kAtLeastOnce)");
          }
          continue;
        }
        const auto& end = channels[message.channel];
        end.adapter->deliver(*message.batch, *end.receiver);
        message.batch.reset();
        break;
      }
      case Kind::kEndOfStream:
        ended_[message.channel] = true;
        --open_channels;
        if (alignment_ && aligned()) {
          take_snapshot(alignment_->id, (Clock::now() - alignment_->started).count(), true);
          end_alignment();
        }
        break;
      case Kind::kBarrier:
        if (checkpointing == nullptr) {
          // Only a peer built from another program sends one to a job without checkpoints.
          throw Error("a checkpoint barrier arrived on input channel " +
                      std::to_string(message.channel) +
                      ", but this job has no checkpoints; every process of a job must run the "
                      "same program");
        }
        on_barrier(message.channel, message.checkpoint);
        break;
      default:
        on_command(message);
        break;
    }
    flush_lingering(config);
  }
  // No alignment outlives the input: once every channel has ended, the
  // checkpoint being aligned was taken at the last end.
}

void Task::on_command(const detail::Message& command) {
  switch (command.kind) {
    case Kind::kTriggerCheckpoint:
      // Only sources start checkpoints; the others take theirs at barriers.
      if (is_source && command.checkpoint > last_checkpoint_) {
        take_snapshot(command.checkpoint, 0, true);
      }
      break;
    case Kind::kCheckpointComplete:
      for (auto& op : operators) op->notify_checkpoint_complete(command.checkpoint);
      break;
    case Kind::kCheckpointAborted:
      if (alignment_ && alignment_->id == command.checkpoint) end_alignment();
      if (command.checkpoint > last_checkpoint_) last_checkpoint_ = command.checkpoint;
      break;
    default:
      break;
  }
}

void Task::on_barrier(std::uint32_t channel, std::uint64_t id) {
  if (id <= last_checkpoint_) return;  // of a checkpoint this task declined or saw aborted
  if (alignment_ && id > alignment_->id) {
    // A newer barrier: the older checkpoint cannot complete any more. What
    // was held for it came before this barrier, so it goes first, and the
    // barrier is taken again after it.
    const auto held = static_cast<std::ptrdiff_t>(alignment_->held.size());
    decline(alignment_->id, "barrier " + std::to_string(id) + " overtook it");
    replay_.insert(replay_.begin() + held, detail::Message::barrier(channel, id));
    return;
  }
  if (!alignment_) {
    alignment_.emplace();
    alignment_->id = id;
    alignment_->arrived.assign(channels.size(), false);
    alignment_->started = Clock::now();
  }
  alignment_->arrived[channel] = true;
  if (aligned()) {
    take_snapshot(id, (Clock::now() - alignment_->started).count(), true);
    end_alignment();
  }
}

bool Task::aligned() const {
  for (std::size_t c = 0; c < channels.size(); ++c) {
    if (!alignment_->arrived[c] && !ended_[c]) return false;
  }
  return true;
}

// Held batches go back in front of the queue, in the order they came.
void Task::end_alignment() {
  if (alignment_->id > last_checkpoint_) last_checkpoint_ = alignment_->id;
  for (auto it = alignment_->held.rbegin(); it != alignment_->held.rend(); ++it) {
    replay_.push_front(std::move(*it));
  }
  alignment_.reset();
}

void Task::decline(std::uint64_t id, const std::string& reason) {
  checkpointing->decline(id, key(), reason);
  if (alignment_ && alignment_->id == id) end_alignment();
  if (id > last_checkpoint_) last_checkpoint_ = id;
}

void Task::take_snapshot(std::uint64_t id, std::int64_t alignment_ns, bool forward_barrier) {
  // snapshot_ is the last checkpoint's, whose memory the operators reuse.
  snapshot_.operators.resize(operators.size());
  for (std::size_t i = 0; i < operators.size(); ++i)
    operators[i]->snapshot(snapshot_.operators[i], id);
  if (forward_barrier) {
    for (auto& writer : writers) writer->barrier(id);
  }
  last_checkpoint_ = id;
  checkpointing->store(id, key(), name,
                       checkpoint::encode(snapshot_, checkpointing->spare_buffer(key())),
                       alignment_ns);
}

// The final checkpoint of a bounded job: this task's last snapshot (its
// operators have finished: a sink's output is pending, not yet visible),
// then the commit once every task has stored its own.
void Task::await_final_checkpoint() {
  checkpointing->finished(key());
  std::uint64_t final_id = 0;
  detail::Message command;
  while (true) {
    queue->pop(command);
    if (command.kind == Kind::kFinalCheckpoint) {
      // Every task has ended: the final checkpoint goes to all, no barriers.
      final_id = command.checkpoint;
      take_snapshot(final_id, 0, false);
    } else if (command.kind == Kind::kCheckpointComplete) {
      for (auto& op : operators) op->notify_checkpoint_complete(command.checkpoint);
      if (final_id != 0 && command.checkpoint >= final_id) return;
    }
  }
}

void Task::flush_lingering(const ExecutionConfig& config) {
  const auto now = Clock::now();
  if (now - last_flush_ >= config.linger) {
    flush_writers();
    last_flush_ = now;
  }
}

void Task::poll_async() {
  for (auto* calls : async_) calls->poll();
}

bool Task::async_full() const {
  for (const auto* calls : async_) {
    if (calls->full()) return true;
  }
  return false;
}

Clock::time_point Task::async_deadline() const {
  auto deadline = Clock::time_point::max();
  for (const auto* calls : async_) deadline = std::min(deadline, calls->deadline());
  return deadline;
}

void Task::wait_async(const ExecutionConfig& config) {
  auto deadline = async_deadline();
  if (writers_pending()) deadline = std::min(deadline, last_flush_ + config.linger);
  queue->wait_for_wake(deadline);
  flush_lingering(config);
}

// Completions keep coming until the last call is done; each one is emitted
// (downstream, through the writers) as it comes.
void Task::drain(detail::AsyncCalls& calls, const ExecutionConfig& config) {
  poll_async();
  while (!calls.idle()) {
    wait_async(config);
    poll_async();
  }
}

void Task::flush_writers() {
  for (auto& writer : writers) writer->flush();
}

bool Task::writers_pending() const {
  for (const auto& writer : writers) {
    if (writer->has_pending()) return true;
  }
  return false;
}

}  // namespace sage::runtime
