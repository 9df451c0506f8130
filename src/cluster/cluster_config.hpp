// Settings of a sage cluster that more than one process must agree on, with
// their defaults, and where a node keeps its state.
#pragma once

#include <chrono>
#include <string>

#include "checkpoint/storage.hpp"

namespace sage::cluster {

constexpr int kDefaultClusterPort = 10001;     // workers join here
constexpr int kDefaultJobManagerPort = 19001;  // clients submit here
constexpr int kDefaultDashboardPort = 8265;    // the dashboard, as Ray's (SPEC §6)
// A worker sends a heartbeat this often; a node silent for kNodeTimeout is dead.
constexpr auto kHeartbeatInterval = std::chrono::milliseconds(500);
constexpr auto kNodeTimeout = std::chrono::milliseconds(3000);

// Environment variables a task process is started with.
constexpr const char* kAssignmentVariable = "SAGE_TASK_ASSIGNMENT";
constexpr const char* kDataFdVariable = "SAGE_DATA_FD";
// The head's cluster service, which a task process reports its checkpoints to.
constexpr const char* kHeadAddressVariable = "SAGE_HEAD_ADDRESS";
constexpr const char* kResultFdVariable = "SAGE_RESULT_FD";
// The worker's lease (cluster/lease.hpp); a task process started without one
// (by hand, or by a test) is not fenced.
constexpr const char* kLeaseFdVariable = "SAGE_LEASE_FD";
// Set by `sage job submit` for the program it runs: a file to which
// RemoteEnvironment::submit appends kSubmittingLine as it starts a submit
// (its own error then says why it failed) and the id of each job it submitted.
constexpr const char* kSubmittedJobsVariable = "SAGE_SUBMITTED_JOBS";
constexpr const char* kSubmittingLine = "submitting";

using checkpoint::default_state_dir;
// The token file of a head in `state_dir`.
std::string token_path(const std::string& state_dir);
// What the head started from `state_dir` writes there while it runs (JSON:
// "jobmanager" and "cluster" addresses, the "dashboard" URL, "host", "pid").
std::string head_info_path(const std::string& state_dir);
// A string field of head_info_path(state_dir); empty when that file is
// missing or has none. Throws sage::Error when the file is not JSON.
std::string head_info_field(const std::string& state_dir, const std::string& name);
// The JobManager address in head_info_path(state_dir); empty when that file
// is missing or has none. Throws sage::Error when the file is not JSON.
std::string local_jobmanager_address(const std::string& state_dir);
// A new random token (32 hex digits from the system's random source).
std::string new_token();
// Writes `token` to `path` readable by the owner only (0600). Throws sage::Error.
void write_token(const std::string& path, const std::string& token);
// The token to present: $SAGE_TOKEN, else the token file in `state_dir`.
// Throws sage::Error naming both places when neither has one.
std::string find_token(const std::string& state_dir);

// Creates `path` (and parents) with mode 0700 if missing. Throws sage::Error.
void make_private_dir(const std::string& path);

// Unix time in milliseconds.
std::int64_t now_ms();

}  // namespace sage::cluster
