// How the `sage` command shows what the head reports: the tables of `cluster
// status`, `job list` and `job status`, the units in their cells, and JSON
// for --format=json. Functions of their arguments (and the clock); only
// print_as writes, to stdout.
#pragma once

#include <google/protobuf/message.h>

#include <cstdint>
#include <functional>
#include <string>

#include "sage.pb.h"

namespace sage::cli {

// "512 B", "1.5 KiB", ... "2.0 TiB".
std::string format_bytes(std::uint64_t bytes);

// Prints `message` to stdout as `format` ("json" or "table") asks: as JSON
// (the proto's field names, every field present), or as the text `table`
// makes of it.
void print_as(const std::string& format, const google::protobuf::Message& message,
              const std::function<std::string()>& table);

// The job as `sage job status --format json` prints it: the JobInfo message
// as print_as writes it, with "diagnosis" added (dashboard::findings_document).
std::string job_status_json(const rpc::JobInfo& job);

// One line per node, then a summary naming the JobManager at `address`.
std::string cluster_table(const rpc::ClusterInfo& info, const std::string& address);
// One line per job, newest first as the head sends them.
std::string job_list_table(const rpc::JobList& list);
// The state, times and nodes of a job, then the statistics of its instances:
// live ones (rates, backpressure, queues) while it runs.
std::string job_description(const rpc::JobInfo& job);

}  // namespace sage::cli
