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

// A running job of `operators` chained operators ("op0", "op1", ...) of
// `parallelism` instances each, spread over `processes` task processes of
// nodes "node-0", "node-1", ..., each instance with a user counter, gauge
// and histogram: the shape of the dashboard's cost measurements.
inline rpc::JobInfo wide_job(int operators, int parallelism, int processes, std::int64_t now_ms) {
  rpc::JobInfo job;
  job.set_job_id("job-wide");
  job.set_name("wide");
  job.set_state(rpc::JobInfo::RUNNING);
  job.set_submitted_at_ms(now_ms - 60'000);
  job.set_started_at_ms(now_ms - 59'000);
  job.set_last_progress_ms(now_ms);
  auto* chain = job.add_chains();
  chain->set_parallelism(parallelism);
  for (int o = 0; o < operators; ++o) {
    chain->add_operators("op" + std::to_string(o));
    chain->add_operator_ids(o);
    if (o == 0) continue;
    auto* edge = job.add_edges();
    edge->set_from_operator(o - 1);
    edge->set_to_operator(o);
    edge->set_partitioning("forward");
    edge->set_chained(true);
  }
  for (int p = 0; p < processes; ++p) {
    auto* process = job.add_processes();
    process->set_process_index(p);
    process->set_node_id("node-" + std::to_string(p));
    process->set_pid(1000 + p);
    process->set_resident_bytes(512ull << 20);
    process->set_memory_limit_bytes(4ull << 30);
  }
  for (int o = 0; o < operators; ++o) {
    for (int i = 0; i < parallelism; ++i) {
      auto& s = add_instance(job, o, "op" + std::to_string(o), i, 100'000 + i);
      s.set_parallelism(parallelism);
      s.set_process_id(1000 + i % processes);
      s.set_node_id("node-" + std::to_string(i % processes));
      s.set_records_in_per_second(1000.5);
      s.set_records_out_per_second(1000.5);
      s.set_busy_seconds(12.25);
      s.set_blocked_seconds(0.5);
      s.set_queue_capacity_batches(64);
      (*s.mutable_counters())["seen"] = 100'000 + i;
      (*s.mutable_gauges())["last"] = i;
      auto& h = (*s.mutable_histograms())["latency"];
      h.set_count(100);
      h.set_sum(1.5);
      h.set_p50(0.01);
      h.set_p90(0.02);
      h.set_p99(0.05);
      for (int p = 0; p < processes; ++p) {
        if (i % processes == p) {
          job.mutable_processes(p)->add_instances("op" + std::to_string(o) + "[" +
                                                  std::to_string(i) + "/" +
                                                  std::to_string(parallelism) + "]");
        }
      }
    }
  }
  return job;
}

}  // namespace sage::testing
