#include "dashboard/api.hpp"

#include <algorithm>
#include <map>

#include "dashboard/diagnosis.hpp"

namespace sage::dashboard {
namespace {

using nlohmann::json;

json resources(const rpc::Resources& r) {
  return {{"cpus", r.num_cpus()}, {"gpus", r.num_gpus()}, {"memory_bytes", r.memory_bytes()}};
}

json job_summary(const rpc::JobInfo& job) {
  std::uint64_t instances = 0;
  for (const auto& chain : job.chains()) {
    instances += static_cast<std::uint64_t>(chain.operators_size()) * chain.parallelism();
  }
  return {{"id", job.job_id()},
          {"name", job.name()},
          {"state", rpc::JobInfo::State_Name(job.state())},
          {"submitted_at_ms", job.submitted_at_ms()},
          {"started_at_ms", job.started_at_ms()},
          {"finished_at_ms", job.finished_at_ms()},
          {"instance_count", instances},
          {"restarts", job.restarts()},
          {"error", job.error()},
          {"pending_reason", job.pending_reason()}};
}

json instance_document(const rpc::InstanceStats& s) {
  json user = json::object();
  for (const auto& [name, value] : s.counters()) user["counters"][name] = value;
  for (const auto& [name, value] : s.gauges()) user["gauges"][name] = value;
  for (const auto& [name, h] : s.histograms()) {
    user["histograms"][name] = {{"count", h.count()}, {"sum", h.sum()}, {"min", h.min()},
                                {"max", h.max()},     {"p50", h.p50()}, {"p90", h.p90()},
                                {"p99", h.p99()}};
  }
  return {{"operator_id", s.operator_id()},
          {"operator", s.operator_name()},
          {"instance", s.parallel_index()},
          {"node", s.node_id()},
          {"pid", s.process_id()},
          {"running", s.running()},
          {"records_in", s.records_in()},
          {"records_out", s.records_out()},
          {"records_in_per_second", s.records_in_per_second()},
          {"records_out_per_second", s.records_out_per_second()},
          {"busy_seconds", s.busy_seconds()},
          {"backpressured_seconds", s.blocked_seconds()},
          {"backpressure", s.backpressure()},
          {"busy", s.busy()},
          {"queue_batches", s.queue_batches()},
          {"queue_capacity_batches", s.queue_capacity_batches()},
          {"errors", s.errors()},
          {"metrics", user}};
}

// Each operator of the graph with its instances' figures summed (rates,
// records), their highest backpressure, and the nodes they run on.
json operators_document(const rpc::JobInfo& job) {
  std::map<int, json> operators;
  for (int c = 0; c < job.chains_size(); ++c) {
    const auto& chain = job.chains(c);
    for (int o = 0; o < chain.operators_size(); ++o) {
      const int id = o < chain.operator_ids_size() ? chain.operator_ids(o) : -1;
      operators[id] = {{"id", id},
                       {"name", chain.operators(o)},
                       {"chain", c},
                       {"parallelism", chain.parallelism()},
                       {"records_in", 0},
                       {"records_out", 0},
                       {"records_in_per_second", 0.0},
                       {"records_out_per_second", 0.0},
                       {"busy_seconds", 0.0},
                       {"backpressured_seconds", 0.0},
                       {"backpressure", 0.0},
                       {"busy", 0.0},
                       {"queue_batches", 0},
                       {"errors", 0},
                       {"running_instances", 0},
                       {"nodes", json::array()}};
    }
  }
  for (const auto& s : job.instances()) {
    auto found = operators.find(s.operator_id());
    if (found == operators.end()) continue;
    json& o = found->second;
    o["records_in"] = o["records_in"].get<std::uint64_t>() + s.records_in();
    o["records_out"] = o["records_out"].get<std::uint64_t>() + s.records_out();
    o["records_in_per_second"] =
        o["records_in_per_second"].get<double>() + s.records_in_per_second();
    o["records_out_per_second"] =
        o["records_out_per_second"].get<double>() + s.records_out_per_second();
    o["busy_seconds"] = o["busy_seconds"].get<double>() + s.busy_seconds();
    o["backpressured_seconds"] = o["backpressured_seconds"].get<double>() + s.blocked_seconds();
    if (s.running()) {
      o["backpressure"] = std::max(o["backpressure"].get<double>(), s.backpressure());
      o["busy"] = std::max(o["busy"].get<double>(), s.busy());
      o["running_instances"] = o["running_instances"].get<int>() + 1;
    }
    o["queue_batches"] = o["queue_batches"].get<std::uint64_t>() + s.queue_batches();
    o["errors"] = o["errors"].get<std::uint64_t>() + s.errors();
    json& nodes = o["nodes"];
    if (std::find(nodes.begin(), nodes.end(), s.node_id()) == nodes.end()) {
      nodes.push_back(s.node_id());
    }
  }
  json out = json::array();
  for (auto& [id, o] : operators) out.push_back(std::move(o));
  return out;
}

}  // namespace

json cluster_document(const rpc::ClusterInfo& cluster) {
  json nodes = json::array();
  for (const auto& node : cluster.nodes()) {
    nodes.push_back({{"id", node.node_id()},
                     {"address", node.address()},
                     {"alive", node.alive()},
                     {"last_heartbeat_ms", node.last_heartbeat_ms()},
                     {"total", resources(node.total())},
                     {"used", resources(node.used())}});
  }
  json jobs = json::array();
  for (const auto& job : cluster.running_jobs()) jobs.push_back(job_summary(job));
  return {{"nodes", nodes}, {"jobs", jobs}};
}

json jobs_document(const std::vector<rpc::JobInfo>& jobs, std::size_t offset, std::size_t limit) {
  json page = json::array();
  for (std::size_t i = offset; i < jobs.size() && i < offset + limit; ++i) {
    page.push_back(job_summary(jobs[i]));
  }
  return {{"total", jobs.size()}, {"offset", offset}, {"limit", limit}, {"jobs", page}};
}

json job_document(const rpc::JobInfo& job, bool instances, std::int64_t now_ms, int only_operator) {
  json document = job_summary(job);
  document["nodes"] = job.nodes();
  document["restart_causes"] = job.restart_causes();
  document["last_progress_ms"] = job.last_progress_ms();
  document["now_ms"] = now_ms;  // the head's clock, for rates over the page's refreshes
  const auto& c = job.checkpoints();
  document["checkpoints"] = {{"completed", c.completed()},
                             {"failed", c.failed()},
                             {"last_id", c.last_id()},
                             {"last_completed_at_ms", c.last_completed_at_ms()},
                             {"last_duration_ms", c.last_duration_ms()},
                             {"last_bytes", c.last_bytes()},
                             {"last_failure", c.last_failure()}};
  document["operators"] = operators_document(job);
  json edges = json::array();
  for (const auto& e : job.edges()) {
    edges.push_back({{"from", e.from_operator()},
                     {"to", e.to_operator()},
                     {"partitioning", e.partitioning()},
                     {"chained", e.chained()}});
  }
  document["edges"] = edges;
  json processes = json::array();
  for (const auto& p : job.processes()) {
    json process = {{"index", p.process_index()},
                    {"node", p.node_id()},
                    {"pid", p.pid()},
                    {"resident_bytes", p.resident_bytes()},
                    {"memory_limit_bytes", p.memory_limit_bytes()},
                    {"instance_count", p.instances_size()}};
    if (instances) process["instances"] = p.instances();
    processes.push_back(std::move(process));
  }
  document["processes"] = processes;
  document["diagnosis"] = findings_document(diagnose(job, now_ms));
  if (instances) {
    json list = json::array();
    for (const auto& s : job.instances()) {
      if (only_operator == -1 || s.operator_id() == only_operator) {
        list.push_back(instance_document(s));
      }
    }
    document["instances"] = list;
  }
  return document;
}

json output_document(const OutputTail& tail) {
  json lines = json::array();
  for (const auto& line : tail.lines) {
    lines.push_back(
        line.size() <= kMaxOutputLineBytes ? line : line.substr(0, kMaxOutputLineBytes) + "\u2026");
  }
  return {{"first_line", tail.first_line}, {"line_count", tail.line_count}, {"lines", lines}};
}

}  // namespace sage::dashboard
