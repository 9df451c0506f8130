// What the dashboard reads of the cluster: the head's nodes, jobs and job
// output, as the JobManager's messages. The head implements it over its state
// (taking its lock for each call); tests implement it with fixed messages.
// Called from the dashboard's worker threads, concurrently.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sage.pb.h"

namespace sage::dashboard {

// The last lines of a job's output.
struct OutputTail {
  std::int64_t first_line = 0;  // the number of lines[0] in the job's output
  std::int64_t line_count = 0;  // lines the job has written in all
  std::vector<std::string> lines;
};

class ClusterView {
 public:
  virtual ~ClusterView() = default;
  // The nodes, and the jobs not yet ended.
  virtual rpc::ClusterInfo cluster() const = 0;
  // Every job the head remembers, newest first, without per-instance
  // statistics, processes and restart causes.
  virtual std::vector<rpc::JobInfo> job_summaries() const = 0;
  // The jobs not ended and those that ended after `ended_after_ms`, with live
  // statistics, newest first.
  virtual std::vector<rpc::JobInfo> jobs(std::int64_t ended_after_ms) const = 0;
  // One job with live statistics, or nullopt when the head does not know it.
  virtual std::optional<rpc::JobInfo> job(const std::string& job_id) const = 0;
  // At most `max_lines` of the job's output: its last ones, but none before
  // line `from_line`; nullopt when the head does not know the job.
  virtual std::optional<OutputTail> output(const std::string& job_id, std::int64_t from_line,
                                           std::int64_t max_lines) const = 0;
};

}  // namespace sage::dashboard
