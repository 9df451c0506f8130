// What the dashboard reads of the cluster: the head's nodes and jobs, as the
// JobManager's messages. The head implements it over its state (taking its
// lock for each call); tests implement it with fixed messages. Called from
// the dashboard's worker threads, concurrently.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sage.pb.h"

namespace sage::dashboard {

class ClusterView {
 public:
  virtual ~ClusterView() = default;
  // The nodes, and the jobs not yet ended.
  virtual rpc::ClusterInfo cluster() const = 0;
  // Every job the head remembers, with live statistics, newest first.
  virtual std::vector<rpc::JobInfo> jobs() const = 0;
  // One job with live statistics, or nullopt when the head does not know it.
  virtual std::optional<rpc::JobInfo> job(const std::string& job_id) const = 0;
};

}  // namespace sage::dashboard
