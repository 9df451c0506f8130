// Test support for the dashboard: JobInfo messages as the head would give them.
#pragma once

#include <string>

#include "sage.pb.h"

namespace sage::testing {

// Adds instance `index` of operator `operator_id` ("name") to `job`.
inline rpc::InstanceStats& add_instance(rpc::JobInfo& job, int operator_id, const std::string& name,
                                        int index, std::uint64_t records_in,
                                        double backpressure = 0) {
  auto* s = job.add_instances();
  s->set_operator_id(operator_id);
  s->set_operator_name(name);
  s->set_parallel_index(index);
  s->set_node_id("head");
  s->set_records_in(records_in);
  s->set_records_out(records_in);
  s->set_running(true);
  s->set_backpressure(backpressure);
  return *s;
}

// A running job "source" (0, parallelism 1) -> "work" (1, parallelism 4),
// hash-partitioned, started at `started_ms`.
inline rpc::JobInfo running_job(std::int64_t started_ms) {
  rpc::JobInfo job;
  job.set_job_id("job-1");
  job.set_name("words");
  job.set_state(rpc::JobInfo::RUNNING);
  job.set_started_at_ms(started_ms);
  job.set_last_progress_ms(started_ms);
  for (const auto& [id, name, parallelism] :
       {std::tuple{0, "source", 1}, std::tuple{1, "work", 4}}) {
    auto* chain = job.add_chains();
    chain->set_parallelism(parallelism);
    chain->add_operators(name);
    chain->add_operator_ids(id);
  }
  auto* edge = job.add_edges();
  edge->set_from_operator(0);
  edge->set_to_operator(1);
  edge->set_partitioning("hash");
  return job;
}

}  // namespace sage::testing
