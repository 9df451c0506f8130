#include "runtime/task.hpp"

#include <chrono>

namespace sage::runtime {

using Clock = std::chrono::steady_clock;

void Task::run(JobControl& control, const ExecutionConfig& config) {
  // Open downstream operators first, so each is ready before records reach it.
  for (auto it = operators.rbegin(); it != operators.rend(); ++it) (*it)->open();
  if (queue == nullptr) {
    run_source(control, config);
  } else {
    run_inputs(config);
  }
  for (auto& op : operators) op->finish();
  for (auto& writer : writers) writer->finish();
}

void Task::run_source(JobControl& control, const ExecutionConfig& config) {
  auto& source = static_cast<detail::SourceOperator&>(*operators.front());
  auto last_flush = Clock::now();
  bool more = true;
  while (more && !control.stop_requested()) {
    if (control.cancelled()) throw detail::JobCancelledError{};
    const auto now = Clock::now();
    more = source.produce(config.batch_size, now + config.linger);
    if (Clock::now() - last_flush >= config.linger) {
      flush_writers();
      last_flush = Clock::now();
    }
  }
}

void Task::run_inputs(const ExecutionConfig& config) {
  std::size_t open_channels = channels.size();
  auto last_flush = Clock::now();
  detail::Message message;
  while (open_channels > 0) {
    if (writers_pending()) {
      if (!queue->pop_until(message, last_flush + config.linger)) {
        flush_writers();
        last_flush = Clock::now();
        continue;
      }
    } else {
      queue->pop(message);
    }
    if (message.kind == detail::Message::Kind::kEndOfStream) {
      --open_channels;
      continue;
    }
    if (message.kind != detail::Message::Kind::kBatch) continue;
    const auto& end = channels[message.channel];
    end.adapter->deliver(*message.batch, *end.receiver);
    message.batch.reset();
    const auto now = Clock::now();
    if (now - last_flush >= config.linger) {
      flush_writers();
      last_flush = now;
    }
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
