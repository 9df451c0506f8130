// The outcome of a job: its final state and, for every operator instance, where
// it ran and what it did. execute() returns it; JobFailedError carries it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sage/error.hpp"
#include "sage/metrics.hpp"

namespace sage {

// kPending: submitted to a cluster, waiting until every instance has a place.
enum class JobState { kPending, kRunning, kFinished, kStopped, kFailed };
const char* to_string(JobState state);

// What one parallel instance of an operator did.
struct InstanceStats {
  std::string operator_name;
  int operator_id = 0;  // the operator's position in the program: results are in this order
  int parallel_index = 0;
  int parallelism = 1;
  std::string node_id;
  int process_id = 0;
  std::uint64_t records_in = 0;
  std::uint64_t records_out = 0;
  double busy_seconds = 0;     // in the operator's own code
  double blocked_seconds = 0;  // waiting for room downstream (backpressure)
  std::uint64_t errors = 0;
  std::uint64_t queue_batches = 0;       // in the input queue when these were taken
  std::uint64_t queue_peak_batches = 0;  // fullest the input queue got
  std::uint64_t queue_capacity_batches = 0;
  bool running = false;  // still at work when these were taken (statistics of a running job)
  MetricsSnapshot user_metrics;
};

struct JobResult {
  std::string job_id;
  std::string job_name;
  JobState state = JobState::kRunning;
  std::string error;  // for kFailed: which operator, instance, node, and the message
  double duration_seconds = 0;
  std::vector<InstanceStats> instances;  // ordered by operator, then instance
  // Fault tolerance: how often the job restarted from a checkpoint, and why
  // (one line per restart, oldest first).
  int restarts = 0;
  std::vector<std::string> restart_causes;
  // Checkpoints completed and failed (declined or timed out), and the last
  // completed one: its id (0: none) and size in bytes.
  std::uint64_t checkpoints_completed = 0;
  std::uint64_t checkpoints_failed = 0;
  std::uint64_t last_checkpoint_id = 0;
  std::uint64_t last_checkpoint_bytes = 0;

  // A table: one line per instance with node, pid and record counts, then
  // user_metrics_table() when there are user metrics.
  std::string statistics_table() const;
  // The user metrics per operator, its instances merged: counters summed and
  // histograms merged; gauges, levels of each instance, per instance. Empty
  // when no instance recorded any.
  std::string user_metrics_table() const;
};

// The job failed: an operator threw, or the engine could not run it. what() is
// the job's error; result() holds what the instances did until then.
class JobFailedError : public Error {
 public:
  explicit JobFailedError(JobResult result)
      : Error("job '" + result.job_name + "' (" + result.job_id + ") failed: " + result.error),
        result_(std::move(result)) {}
  const JobResult& result() const { return result_; }

 private:
  JobResult result_;
};

}  // namespace sage
