// The cluster's metrics in the Prometheus text exposition format (0.0.4),
// served at /metrics: names with the sage_ prefix in base units (seconds,
// bytes), counters ending in _total, labels job, operator, instance and node.
// docs/observability.md lists every metric. Pure: the figures come in, text
// goes out.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "sage.pb.h"

namespace sage::dashboard {

// How long the series of a job that ended stay: long enough for a scrape
// (Prometheus's default interval is 1 min) to see its final figures.
constexpr std::chrono::minutes kEndedJobSeriesRetention{5};

// `jobs` as ClusterView::jobs() gives them; jobs that ended more than
// `retention` before `now_ms` are left out.
std::string render_metrics(const rpc::ClusterInfo& cluster, const std::vector<rpc::JobInfo>& jobs,
                           std::int64_t now_ms,
                           std::chrono::milliseconds retention = kEndedJobSeriesRetention);

// A label value escaped for the text format (backslash, double quote, newline).
std::string escape_label_value(const std::string& value);
// A user's metric name made a valid Prometheus name: [a-zA-Z0-9_:], other
// characters become '_', and a leading digit gets a '_' before it.
std::string metric_name_part(const std::string& name);

}  // namespace sage::dashboard
