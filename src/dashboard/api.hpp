// The JSON documents of /api/v1: the cluster, a page of jobs, and one job with
// its graph and statistics aggregated per operator (per instance only when
// asked: a job of thousands of instances stays a small document). Pure.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "dashboard/cluster_view.hpp"
#include "sage.pb.h"

namespace sage::dashboard {

// The most jobs one page of /api/v1/jobs holds, and its default size.
constexpr int kMaxJobsPerPage = 500;
constexpr int kDefaultJobsPerPage = 50;

// /api/v1/cluster: the nodes with their resources, and the jobs not ended.
nlohmann::json cluster_document(const rpc::ClusterInfo& cluster);
// /api/v1/jobs: jobs[offset, offset + limit) of `jobs` (newest first), and the total.
nlohmann::json jobs_document(const std::vector<rpc::JobInfo>& jobs, std::size_t offset,
                             std::size_t limit);
// The longest output line /api/v1/jobs/<id>/output returns whole; longer
// ones are cut (and end in "…").
constexpr std::size_t kMaxOutputLineBytes = 2048;

// /api/v1/jobs/<id>: the job, its operators and edges, its task processes'
// memory, its diagnosis, and with `instances` each instance's figures (those
// of operator `only_operator` when it is not -1).
nlohmann::json job_document(const rpc::JobInfo& job, bool instances, std::int64_t now_ms,
                            int only_operator = -1);
// /api/v1/jobs/<id>/output: the last lines of its output.
nlohmann::json output_document(const OutputTail& tail);

}  // namespace sage::dashboard
