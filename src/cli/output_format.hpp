// How the `sage` command shows what the head reports: the tables of `cluster
// status`, `job list` and `job status`, the units in their cells, and JSON
// for --format=json. Pure functions of their arguments (and the clock).
#pragma once

#include <google/protobuf/message.h>

#include <cstdint>
#include <string>

#include "sage.pb.h"

namespace sage::cli {

// "512 B", "1.5 KiB", ... "2.0 TiB".
std::string format_bytes(std::uint64_t bytes);
// A Unix time in ms as local "YYYY-MM-DD HH:MM:SS"; "-" for none (0).
std::string format_time(std::int64_t ms);
// From submission to the end (or now, while it runs) as "12.3 s"; "-" before.
std::string format_duration(const rpc::JobInfo& job);
// The message as JSON with the proto's field names, every field present.
std::string to_json(const google::protobuf::Message& message);

// One line per node, then a summary naming the JobManager at `address`.
std::string cluster_table(const rpc::ClusterInfo& info, const std::string& address);
// One line per job, newest first as the head sends them.
std::string job_list_table(const rpc::JobList& list);
// The state, times and nodes of a job, then the statistics of its instances:
// live ones (rates, backpressure, queues) while it runs.
std::string job_description(const rpc::JobInfo& job);

}  // namespace sage::cli
