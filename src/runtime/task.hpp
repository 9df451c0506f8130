// A task: one parallel instance of a chain, run by one thread. It opens its
// operators, feeds them (from the source, or from its input queue), flushes
// partly filled output batches when they have lingered, and at the end of all
// input finishes its operators head first and ends its output channels.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/input_queue.hpp"
#include "runtime/job_control.hpp"
#include "sage/detail/batch.hpp"
#include "sage/options.hpp"

namespace sage::runtime {

struct Task {
  // Where each input channel's batches go.
  struct ChannelEnd {
    const detail::InputAdapter* adapter = nullptr;
    detail::BatchReceiverBase* receiver = nullptr;
  };

  std::string name;  // the head instance, e.g. "DistMapper[2/4]"
  int chain = 0;     // which chain of the plan, and which instance of it
  int instance = 0;
  std::vector<std::unique_ptr<detail::Operator>> operators;  // head first
  std::vector<std::unique_ptr<detail::ChannelWriterBase>> writers;
  InputQueue* queue = nullptr;  // null for a source chain
  std::vector<ChannelEnd> channels;

  // Runs to the end of input. Throws OperatorError for a failing user
  // function and detail::JobCancelledError when the job is cancelled.
  void run(JobControl& control, const ExecutionConfig& config);

 private:
  void run_source(JobControl& control, const ExecutionConfig& config);
  void run_inputs(const ExecutionConfig& config);
  void flush_writers();
  bool writers_pending() const;
};

}  // namespace sage::runtime
