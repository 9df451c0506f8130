#include "dashboard/prometheus.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <utility>

namespace sage::dashboard {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// The samples of each metric family, kept together as the format requires,
// families in the order they were first named.
class Exposition {
 public:
  void add(const std::string& name, const char* type, const char* help, const Labels& labels,
           double value, const std::string& suffix = "") {
    auto [it, fresh] = index_.try_emplace(name, families_.size());
    if (fresh) families_.push_back({name, type, help, {}});
    Family& family = families_[it->second];
    if (family.type != type) return;  // a user's name taken by another kind of metric
    family.samples += name + suffix;
    if (!labels.empty()) {
      family.samples += '{';
      for (std::size_t i = 0; i < labels.size(); ++i) {
        if (i > 0) family.samples += ',';
        family.samples += labels[i].first + "=\"" + escape_label_value(labels[i].second) + '"';
      }
      family.samples += '}';
    }
    family.samples += ' ' + format_value(value) + '\n';
  }

  std::string text() const {
    std::string out;
    for (const Family& family : families_) {
      out += "# HELP " + family.name + ' ' + family.help + '\n';
      out += "# TYPE " + family.name + ' ' + family.type + '\n';
      out += family.samples;
    }
    return out;
  }

 private:
  struct Family {
    std::string name;
    std::string type;
    std::string help;
    std::string samples;
  };
  static std::string format_value(double value) {
    if (value != value) return "NaN";
    return fmt::format("{}", value);
  }
  std::vector<Family> families_;
  std::map<std::string, std::size_t> index_;
};

const char* state_name(rpc::JobInfo::State state) {
  return rpc::JobInfo::State_Name(state).c_str();
}

bool ended(const rpc::JobInfo& job) {
  return job.state() == rpc::JobInfo::FINISHED || job.state() == rpc::JobInfo::FAILED ||
         job.state() == rpc::JobInfo::STOPPED;
}

void add_nodes(Exposition& out, const rpc::ClusterInfo& cluster) {
  for (const auto& node : cluster.nodes()) {
    const Labels labels{{"node", node.node_id()}};
    const auto& total = node.total();
    const auto& used = node.used();
    out.add("sage_node_up", "gauge", "Whether the node sends heartbeats (1) or is dead (0).",
            labels, node.alive() ? 1 : 0);
    out.add("sage_node_cpus_held", "gauge", "CPUs held by the instances placed on the node.",
            labels, used.num_cpus());
    out.add("sage_node_cpus_free", "gauge", "CPUs of the node not held.", labels,
            std::max(0.0, total.num_cpus() - used.num_cpus()));
    out.add("sage_node_gpus_held", "gauge", "GPUs held by the instances placed on the node.",
            labels, used.num_gpus());
    out.add("sage_node_gpus_free", "gauge", "GPUs of the node not held.", labels,
            std::max(0, total.num_gpus() - used.num_gpus()));
    out.add("sage_node_memory_held_bytes", "gauge",
            "Memory held by the instances placed on the node.", labels,
            static_cast<double>(used.memory_bytes()));
    out.add("sage_node_memory_free_bytes", "gauge", "Memory of the node not held.", labels,
            static_cast<double>(total.memory_bytes() -
                                std::min(total.memory_bytes(), used.memory_bytes())));
  }
}

void add_job(Exposition& out, const rpc::JobInfo& job, std::int64_t now_ms) {
  const Labels labels{{"job", job.job_id()}};
  out.add("sage_job_info", "gauge", "1 for each job, with its name.",
          {{"job", job.job_id()}, {"name", job.name()}}, 1);
  for (int s = rpc::JobInfo::PENDING; s <= rpc::JobInfo::STOPPED; ++s) {
    const auto state = static_cast<rpc::JobInfo::State>(s);
    out.add("sage_job_state", "gauge", "1 for the state the job is in, 0 for the others.",
            {{"job", job.job_id()}, {"state", state_name(state)}}, job.state() == state ? 1 : 0);
  }
  out.add("sage_job_restarts_total", "counter", "Restarts of the job from a checkpoint.", labels,
          job.restarts());
  const auto& checkpoints = job.checkpoints();
  out.add("sage_job_checkpoints_completed_total", "counter", "Checkpoints of the job completed.",
          labels, static_cast<double>(checkpoints.completed()));
  out.add("sage_job_checkpoints_failed_total", "counter", "Checkpoints of the job that failed.",
          labels, static_cast<double>(checkpoints.failed()));
  if (checkpoints.last_id() != 0) {
    out.add("sage_job_last_checkpoint_duration_seconds", "gauge",
            "How long the last completed checkpoint took.", labels,
            static_cast<double>(checkpoints.last_duration_ms()) / 1000);
    out.add("sage_job_last_checkpoint_size_bytes", "gauge",
            "The size of the last completed checkpoint.", labels,
            static_cast<double>(checkpoints.last_bytes()));
    out.add("sage_job_last_checkpoint_age_seconds", "gauge",
            "Time since the last checkpoint completed.", labels,
            static_cast<double>(
                std::max<std::int64_t>(0, now_ms - checkpoints.last_completed_at_ms())) /
                1000);
  }

  for (const auto& p : job.processes()) {
    const Labels process{{"job", job.job_id()},
                         {"process", std::to_string(p.process_index())},
                         {"node", p.node_id()}};
    out.add("sage_process_resident_memory_bytes", "gauge",
            "Resident memory of the job's task process at its last progress report.", process,
            static_cast<double>(p.resident_bytes()));
    out.add("sage_process_memory_limit_bytes", "gauge",
            "The task process's memory limit: the sum of its instances' resources.memory (0: "
            "none declared).",
            process, static_cast<double>(p.memory_limit_bytes()));
  }

  // An instance's life so far: from the job's start to its end or now.
  const std::int64_t until = ended(job) ? job.finished_at_ms() : now_ms;
  const double lifetime =
      job.started_at_ms() > 0
          ? static_cast<double>(std::max<std::int64_t>(0, until - job.started_at_ms())) / 1000
          : 0.0;
  for (const auto& s : job.instances()) {
    const Labels instance{{"job", job.job_id()},
                          {"operator", s.operator_name()},
                          {"instance", std::to_string(s.parallel_index())},
                          {"node", s.node_id()}};
    out.add("sage_instance_records_in_total", "counter", "Records the instance received.", instance,
            static_cast<double>(s.records_in()));
    out.add("sage_instance_records_out_total", "counter", "Records the instance emitted.", instance,
            static_cast<double>(s.records_out()));
    out.add("sage_instance_busy_seconds_total", "counter",
            "Time the instance spent processing records.", instance, s.busy_seconds());
    out.add("sage_instance_backpressured_seconds_total", "counter",
            "Time the instance waited for room downstream.", instance, s.blocked_seconds());
    out.add("sage_instance_idle_seconds_total", "counter",
            "Time the instance neither processed nor waited for room: it waited for input.",
            instance, std::max(0.0, lifetime - s.busy_seconds() - s.blocked_seconds()));
    out.add("sage_instance_errors_total", "counter", "Errors of the instance.", instance,
            static_cast<double>(s.errors()));
    out.add("sage_instance_queue_batches", "gauge",
            "Batches waiting in the instance's input queue.", instance,
            static_cast<double>(s.queue_batches()));
    out.add("sage_instance_queue_capacity_batches", "gauge",
            "The capacity of the instance's input queue, in batches.", instance,
            static_cast<double>(s.queue_capacity_batches()));
    out.add("sage_instance_backpressure_ratio", "gauge",
            "The fraction of the last report interval the instance waited for room downstream.",
            instance, s.backpressure());
    out.add("sage_instance_busy_ratio", "gauge",
            "The fraction of the last report interval the instance spent in its operator's code.",
            instance, s.busy());
    for (const auto& [name, value] : s.counters()) {
      out.add("sage_user_" + metric_name_part(name) + "_total", "counter",
              "A counter of the job's own (RuntimeContext::metrics()).", instance,
              static_cast<double>(value));
    }
    for (const auto& [name, value] : s.gauges()) {
      out.add("sage_user_" + metric_name_part(name), "gauge",
              "A gauge of the job's own (RuntimeContext::metrics()).", instance, value);
    }
    for (const auto& [name, h] : s.histograms()) {
      const std::string family = "sage_user_" + metric_name_part(name);
      const char* help = "A histogram of the job's own (RuntimeContext::metrics()), as quantiles.";
      for (const auto& [q, value] :
           {std::pair{"0.5", h.p50()}, std::pair{"0.9", h.p90()}, std::pair{"0.99", h.p99()}}) {
        Labels with_quantile = instance;
        with_quantile.emplace_back("quantile", q);
        out.add(family, "summary", help, with_quantile, value);
      }
      out.add(family, "summary", help, instance, h.sum(), "_sum");
      out.add(family, "summary", help, instance, static_cast<double>(h.count()), "_count");
    }
  }
}

}  // namespace

std::string escape_label_value(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string metric_name_part(const std::string& name) {
  std::string out;
  for (char c : name) {
    const bool valid = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '_' || c == ':';
    out += valid ? c : '_';
  }
  if (out.empty() || (out[0] >= '0' && out[0] <= '9')) out.insert(out.begin(), '_');
  return out;
}

std::string render_metrics(const rpc::ClusterInfo& cluster, const std::vector<rpc::JobInfo>& jobs,
                           std::int64_t now_ms, std::chrono::milliseconds retention) {
  Exposition out;
  add_nodes(out, cluster);
  for (const auto& job : jobs) {
    if (ended(job) && now_ms - job.finished_at_ms() > retention.count()) continue;
    add_job(out, job, now_ms);
  }
  return out.text();
}

}  // namespace sage::dashboard
