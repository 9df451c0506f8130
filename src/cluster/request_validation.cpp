#include "cluster/request_validation.hpp"

#include <fmt/format.h>

#include <cmath>
#include <set>

#include "cluster/program_store.hpp"
#include "cluster/task_output.hpp"
#include "net/socket.hpp"
#include "sage/error.hpp"
#include "sage/options.hpp"

namespace sage::cluster {
namespace {

using Problem = std::optional<std::string>;

// A value as a message may quote it: at most 64 bytes, then "...".
std::string quoted(std::string_view value) {
  constexpr std::size_t kShown = 64;
  return "'" + cut_text(value, kShown) + "'";
}

Problem too_long(const std::string& field, std::size_t size, std::size_t limit) {
  return fmt::format("{} has {} bytes; it must have at most {}", field, size, limit);
}

Problem check_text(const std::string& field, std::string_view value, std::size_t limit) {
  if (value.size() > limit) return too_long(field, value.size(), limit);
  if (value.find('\0') != std::string_view::npos) return field + " contains a NUL byte";
  return std::nullopt;
}

// A job's or an operator's name: text without control characters, which
// would forge lines and colours in the tables of `sage job list` and `status`.
Problem check_name(const std::string& field, std::string_view value) {
  if (auto problem = check_text(field, value, kMaxNameBytes)) return problem;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const auto byte = static_cast<unsigned char>(value[i]);
    if (byte < 0x20 || byte == 0x7f) {
      return fmt::format(
          "{} has the control character 0x{:02x} at byte {}; a name is shown in tables and "
          "logs, so it must be printable (no newlines, tabs or escape sequences)",
          field, byte, i);
    }
  }
  return std::nullopt;
}

Problem check_required_text(const std::string& field, std::string_view value, std::size_t limit) {
  if (value.empty()) return field + " is empty; it must be given";
  return check_text(field, value, limit);
}

// Node ids become names in logs, statistics and peers' errors.
Problem check_node_id(const std::string& field, std::string_view id) {
  if (auto problem = check_required_text(field, id, kMaxIdBytes)) return problem;
  for (char c : id) {
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!allowed) {
      return field + " " + quoted(id) +
             " has a character other than letters, digits, '.', '_' and '-'; pick a "
             "node id (--node-id) of those";
    }
  }
  return std::nullopt;
}

Problem check_job_id(const std::string& field, std::string_view id) {
  return check_required_text(field, id, kMaxIdBytes);
}

Problem check_process(std::string_view job_id, int process_index) {
  if (auto problem = check_job_id("job_id", job_id)) return problem;
  if (process_index < 0) {
    return fmt::format("process_index is {}; it must be 0 or more", process_index);
  }
  return std::nullopt;
}

Problem check_hash(const std::string& field, std::string_view sha256) {
  if (ProgramStore::is_valid_hash(sha256)) return std::nullopt;
  return field + " " + quoted(sha256) + " is not a SHA-256 (64 lowercase hex digits)";
}

}  // namespace

std::optional<std::string> problem_in_node_id(const std::string& field, std::string_view id) {
  return check_node_id(field, id);
}

bool set_only_by_worker(std::string_view name) {
  return (name.starts_with("SAGE_") && name != "SAGE_COLLECTIONS_DIR") ||
         name == "CUDA_VISIBLE_DEVICES";
}

namespace {

// SubmitRequest.environment: "NAME=value" entries a task process gets, none
// of which may be what only its worker sets.
Problem check_environment(const google::protobuf::RepeatedPtrField<std::string>& environment) {
  constexpr int kMaxEntries = 64;
  constexpr std::size_t kMaxEntryBytes = 4096;
  if (environment.size() > kMaxEntries) {
    return fmt::format("environment has {} entries; it must have at most {}", environment.size(),
                       kMaxEntries);
  }
  for (int i = 0; i < environment.size(); ++i) {
    const std::string field = fmt::format("environment[{}]", i);
    const std::string& entry = environment.Get(i);
    if (auto problem = check_text(field, entry, kMaxEntryBytes)) return problem;
    // The value may be a secret (an API key): no message repeats it.
    const std::size_t equals = entry.find('=');
    if (equals == std::string::npos) return field + " has no '='; it must be NAME=value";
    const std::string name = entry.substr(0, equals);
    const bool valid_name =
        !name.empty() && !(name[0] >= '0' && name[0] <= '9') &&
        name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") ==
            std::string::npos;
    if (!valid_name) {
      return field + " names " + quoted(name) +
             ", which is not a variable name (letters, digits and '_', not starting with a digit)";
    }
    if (set_only_by_worker(name)) {
      return field + " sets " + name + ", which only the worker sets";
    }
  }
  return std::nullopt;
}

Problem check_resources(const std::string& field, const rpc::Resources& resources) {
  const double cpus = resources.num_cpus();
  if (!std::isfinite(cpus) || cpus < 0 || cpus > kMaxCpus) {
    return fmt::format("{}.num_cpus is {}; it must be a number from 0 to {:g}", field, cpus,
                       kMaxCpus);
  }
  if (resources.num_gpus() < 0 || resources.num_gpus() > kMaxGpus) {
    return fmt::format("{}.num_gpus is {}; it must be 0 to {}", field, resources.num_gpus(),
                       kMaxGpus);
  }
  if (resources.memory_bytes() > kMaxMemoryBytes) {
    return fmt::format("{}.memory_bytes is {}; it must be at most {} (64 TiB)", field,
                       resources.memory_bytes(), kMaxMemoryBytes);
  }
  return std::nullopt;
}

}  // namespace

std::string cut_text(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  std::size_t end = max_bytes;
  // Back to the start of a character: continuation bytes are 10xxxxxx.
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xc0) == 0x80) --end;
  return std::string(text.substr(0, end)) +
         fmt::format("... ({} more bytes cut)", text.size() - end);
}

Problem problem_in(const rpc::SubmitRequest& request, int max_instances_per_job) {
  if (auto problem = check_name("name", request.name())) return problem;
  if (auto problem = check_hash("program_sha256", request.program_sha256())) return problem;
  if (static_cast<std::size_t>(request.args_size()) > kMaxArgs) {
    return fmt::format("args has {} arguments; it must have at most {}", request.args_size(),
                       kMaxArgs);
  }
  std::size_t args_bytes = 0;
  for (int i = 0; i < request.args_size(); ++i) {
    if (auto problem = check_text(fmt::format("args[{}]", i), request.args(i), kMaxArgsBytes)) {
      return problem;
    }
    args_bytes += request.args(i).size();
  }
  if (args_bytes > kMaxArgsBytes) return too_long("args", args_bytes, kMaxArgsBytes);
  if (auto problem = check_text("working_directory", request.working_directory(), kMaxPathBytes)) {
    return problem;
  }
  if (!request.bundle_sha256().empty()) {
    if (auto problem = check_hash("bundle_sha256", request.bundle_sha256())) return problem;
  }
  if (auto problem = check_environment(request.environment())) return problem;
  const auto& fingerprint = request.fingerprint();
  if (fingerprint.size() != 16 ||
      fingerprint.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return "fingerprint " + quoted(fingerprint) + " is not a plan fingerprint (16 hex digits)";
  }
  if (request.processes_per_node() < 0 || request.processes_per_node() > kMaxTaskProcessesPerNode) {
    return fmt::format("processes_per_node is {}; it must be 0 to {} (0 means 1)",
                       request.processes_per_node(), kMaxTaskProcessesPerNode);
  }
  if (request.chains().empty()) return std::string("chains is empty; a job needs an operator");
  std::int64_t instances = 0;
  for (int c = 0; c < request.chains_size(); ++c) {
    const auto& chain = request.chains(c);
    const std::string field = fmt::format("chains[{}]", c);
    if (chain.parallelism() < 1 || chain.parallelism() > max_instances_per_job) {
      return fmt::format("{}.parallelism is {}; it must be 1 to {}", field, chain.parallelism(),
                         max_instances_per_job);
    }
    instances += chain.parallelism();
    if (auto problem = check_resources(field + ".resources", chain.resources())) return problem;
    if (chain.operators().empty()) return field + ".operators is empty; a chain has an operator";
    for (int o = 0; o < chain.operators_size(); ++o) {
      if (auto problem =
              check_name(fmt::format("{}.operators[{}]", field, o), chain.operators(o))) {
        return problem;
      }
    }
  }
  if (instances > max_instances_per_job) {
    return fmt::format(
        "the job has {} instances in all (the sum of chains[].parallelism); this head runs at "
        "most {} per job (sage cluster start --head --max-instances-per-job)",
        instances, max_instances_per_job);
  }
  int operators = 0;
  for (int c = 0; c < request.chains_size(); ++c) {
    const auto& chain = request.chains(c);
    operators += chain.operators_size();
    if (!chain.operator_ids().empty() && chain.operator_ids_size() != chain.operators_size()) {
      return fmt::format("chains[{}].operator_ids has {} entries for {} operators", c,
                         chain.operator_ids_size(), chain.operators_size());
    }
  }
  for (const auto& chain : request.chains()) {
    for (int o = 0; o < chain.operator_ids_size(); ++o) {
      if (chain.operator_ids(o) < 0 || chain.operator_ids(o) >= operators) {
        return fmt::format("an operator id is {}; the job has operators 0 to {}",
                           chain.operator_ids(o), operators - 1);
      }
    }
  }
  if (request.edges_size() > kMaxEdgesPerOperator * operators) {
    return fmt::format("edges has {} entries for {} operators; at most {} per operator",
                       request.edges_size(), operators, kMaxEdgesPerOperator);
  }
  for (int e = 0; e < request.edges_size(); ++e) {
    const auto& edge = request.edges(e);
    for (const auto& [name, index] : {std::pair{"from_operator", edge.from_operator()},
                                      std::pair{"to_operator", edge.to_operator()}}) {
      if (index < 0 || index >= operators) {
        return fmt::format("edges[{}].{} is {}; the job has operators 0 to {}", e, name, index,
                           operators - 1);
      }
    }
    static const std::set<std::string> kPartitionings = {"forward", "rebalance", "hash",
                                                         "broadcast", "custom"};
    if (!kPartitionings.contains(edge.partitioning())) {
      return fmt::format(
          "edges[{}].partitioning {} is not forward, rebalance, hash, broadcast or custom", e,
          quoted(edge.partitioning()));
    }
  }
  return check_checkpoints("checkpoints", request.checkpoints());
}

Problem check_checkpoints(const std::string& field, const rpc::CheckpointSettings& s) {
  const auto negative = [&](const char* name, std::int64_t value) -> Problem {
    if (value >= 0) return std::nullopt;
    return fmt::format("{}.{} is {}; it must not be negative", field, name, value);
  };
  if (auto p = negative("interval_ms", s.interval_ms())) return p;
  if (s.interval_ms() == 0) return std::nullopt;  // off: the rest does not matter
  if (auto p = negative("min_pause_ms", s.min_pause_ms())) return p;
  if (auto p = negative("restart_delay_ms", s.restart_delay_ms())) return p;
  if (s.timeout_ms() <= 0) return fmt::format("{}.timeout_ms must be positive", field);
  if (s.tolerable_failures() < -1) {
    return fmt::format("{}.tolerable_failures is {}; it must be -1 (any) or more", field,
                       s.tolerable_failures());
  }
  if (s.retained() < 1 || s.retained() > kMaxRetainedCheckpoints) {
    return fmt::format("{}.retained is {}; it must be 1 to {}", field, s.retained(),
                       kMaxRetainedCheckpoints);
  }
  if (s.restart_attempts() < 0 || s.restart_attempts() > kMaxRestartAttempts) {
    return fmt::format("{}.restart_attempts is {}; it must be 0 to {}", field, s.restart_attempts(),
                       kMaxRestartAttempts);
  }
  if (auto p = check_text(field + ".directory", s.directory(), kMaxPathBytes)) return p;
  if (!s.directory().empty() && !s.directory().starts_with("/")) {
    return field + ".directory " + quoted(s.directory()) +
           " is not an absolute path; checkpoints on a cluster need one every node means alike";
  }
  return std::nullopt;
}

Problem problem_in(const rpc::CheckpointReport& report) {
  switch (report.report_case()) {
    case rpc::CheckpointReport::kHello:
      if (report.hello().attempt() < 0 || report.hello().process_index() < 0) {
        return std::string("hello has a negative attempt or process_index");
      }
      return check_job_id("hello.job_id", report.hello().job_id());
    case rpc::CheckpointReport::kDeclined:
      return check_text("declined.reason", report.declined().reason(), kMaxErrorBytes);
    case rpc::CheckpointReport::kAcknowledged:
    case rpc::CheckpointReport::kFinished:
      return std::nullopt;
    default:
      return std::string("an empty checkpoint report");
  }
}

Problem problem_in(const rpc::JoinRequest& request) {
  if (auto problem = check_node_id("node_id", request.node_id())) return problem;
  if (auto problem = check_required_text("host", request.host(), kMaxHostBytes)) return problem;
  for (char c : request.host()) {
    if (c <= ' ' || c == 0x7f) {
      return "host " + quoted(request.host()) + " has a space or control character";
    }
  }
  return check_resources("resources", request.resources());
}

Problem problem_in(const rpc::NodeRef& request) {
  return check_node_id("node_id", request.node_id());
}

Problem problem_in(const rpc::JobRef& request) { return check_job_id("job_id", request.job_id()); }

Problem problem_in(const rpc::WatchRequest& request) {
  if (auto problem = check_job_id("job_id", request.job_id())) return problem;
  if (request.from_line() < 0) {
    return fmt::format("from_line is {}; it must be 0 or more", request.from_line());
  }
  return std::nullopt;
}

Problem problem_in(const rpc::ProgramRef& request) {
  return check_hash("sha256", request.sha256());
}

Problem problem_in(const rpc::SnapshotRef& ref) {
  if (auto problem = check_job_id("job_id", ref.job_id())) return problem;
  if (ref.attempt() < 0) return fmt::format("attempt is {}; it must be 0 or more", ref.attempt());
  if (ref.checkpoint() == 0) return "checkpoint is 0; checkpoint ids start at 1";
  if (ref.chain() < 0 || ref.instance() < 0) {
    return fmt::format("task {}.{} does not exist; chain and instance start at 0", ref.chain(),
                       ref.instance());
  }
  return std::nullopt;
}

Problem problem_in(const rpc::PreparedReport& request) {
  if (auto problem = check_node_id("node_id", request.node_id())) return problem;
  if (auto problem = check_process(request.job_id(), request.process_index())) return problem;
  if (!request.error().empty()) return std::nullopt;  // no address then
  try {
    net::Address::parse(request.data_address());
  } catch (const Error& e) {
    return "data_address " + quoted(request.data_address()) + " is not host:port (" + e.what() +
           ")";
  }
  return std::nullopt;
}

Problem problem_in(const rpc::OutputReport& request) {
  if (auto problem = check_process(request.job_id(), request.process_index())) return problem;
  // A worker cuts lines at kMaxOutputLineBytes (plus a task's mark), turns
  // each byte that is not UTF-8 into 3 and adds a short prefix: 4 times that
  // leaves room for the prefix.
  constexpr std::size_t kMaxLineBytes = 4 * (kMaxOutputLineBytes + kMaxMarkBytes);
  for (int i = 0; i < request.lines_size(); ++i) {
    if (request.lines(i).size() > kMaxLineBytes) {
      return too_long(fmt::format("lines[{}]", i), request.lines(i).size(), kMaxLineBytes);
    }
  }
  return std::nullopt;
}

Problem problem_in(const rpc::ProgressReport& request) {
  return check_process(request.job_id(), request.process_index());
}

Problem problem_in(const rpc::ExitReport& request) {
  return check_process(request.job_id(), request.process_index());
}

}  // namespace sage::cluster
