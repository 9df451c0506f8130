// Checks of every value a control-plane request brings into the head, made
// where it enters, before anything is changed. Each problem_in() returns the
// first problem as one line that names the field and what it must be
// ("chains[2].parallelism is -1; it must be 1 to 4096"), or nullopt when the
// request is sound. Pure functions; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sage.pb.h"

namespace sage::cluster {

// Instances (the sum of all chains' parallelism) one job may have, unless
// the head is told otherwise (--max-instances-per-job), and the most it may
// be told: the head places every instance under its lock.
constexpr int kDefaultMaxInstancesPerJob = 4096;
constexpr int kMaxInstancesPerJobLimit = 65536;

// Sizes of the names and texts a request may carry.
constexpr std::size_t kMaxNameBytes = 1024;  // a job's or an operator's name
constexpr std::size_t kMaxIdBytes = 128;     // a node's or a job's id
constexpr std::size_t kMaxHostBytes = 255;   // a host name (DNS's limit) or address
constexpr std::size_t kMaxPathBytes = 4096;  // a working directory (PATH_MAX)
constexpr int kMaxRetainedCheckpoints = 100;
// A submitted graph's edges, per operator (a union of many streams has many).
constexpr int kMaxEdgesPerOperator = 64;
constexpr int kMaxRestartAttempts = 1000;
constexpr std::size_t kMaxArgs = 10'000;        // a program's arguments...
constexpr std::size_t kMaxArgsBytes = 1 << 20;  // ...and their bytes (execve's limit is 2 MiB)
// An error text kept for a job (an operator's exception may quote anything);
// longer ones are cut, never refused: an exit report must not be lost.
constexpr std::size_t kMaxErrorBytes = 64 << 10;

// Resources a node offers or an instance needs. Bounded so that sums over a
// job's instances cannot overflow: kMaxInstancesPerJobLimit instances of
// kMaxMemoryBytes stay below 2^63.
constexpr double kMaxCpus = 1e6;
constexpr int kMaxGpus = 1024;
constexpr std::uint64_t kMaxMemoryBytes = std::uint64_t{1} << 46;  // 64 TiB

// Whether a task process's environment variable `name` is the worker's to set
// (SAGE_* and the GPUs it hands out), so that neither a job's environment nor
// the worker's own environment passes it on; SAGE_COLLECTIONS_DIR, where a
// Python job's bare RAG collection names live, is the job's own setting.
bool set_only_by_worker(std::string_view name);

// Why `id` cannot be a node id (letters, digits, '.', '_' and '-', at most
// kMaxIdBytes), naming it as `field`; nullopt when it can.
std::optional<std::string> problem_in_node_id(const std::string& field, std::string_view id);

std::optional<std::string> problem_in(const rpc::SubmitRequest& request, int max_instances_per_job);
std::optional<std::string> problem_in(const rpc::JoinRequest& request);
std::optional<std::string> problem_in(const rpc::NodeRef& request);
std::optional<std::string> problem_in(const rpc::JobRef& request);
std::optional<std::string> problem_in(const rpc::WatchRequest& request);
std::optional<std::string> problem_in(const rpc::ProgramRef& request);
std::optional<std::string> problem_in(const rpc::PreparedReport& request);
std::optional<std::string> problem_in(const rpc::OutputReport& request);
std::optional<std::string> problem_in(const rpc::ProgressReport& request);
std::optional<std::string> problem_in(const rpc::ExitReport& request);
std::optional<std::string> problem_in(const rpc::CheckpointReport& report);
std::optional<std::string> problem_in(const rpc::SnapshotRef& ref);
// The checkpoint settings of a submit (`field` names them in the problem).
std::optional<std::string> check_checkpoints(const std::string& field,
                                             const rpc::CheckpointSettings& settings);

// `text` cut to at most `max_bytes` between UTF-8 characters, with a note
// saying how much was cut.
std::string cut_text(std::string_view text, std::size_t max_bytes = kMaxErrorBytes);

}  // namespace sage::cluster
