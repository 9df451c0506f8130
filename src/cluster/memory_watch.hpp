// Enforces the memory limit of a task process: the sum of `resources.memory`
// of its instances. The worker checks the process's resident memory as it
// relays its output and kills the process group when it is over the limit,
// saying by how much. Resident memory, unlike an address-space limit
// (RLIMIT_AS), is not charged for reservations that are never touched (CUDA,
// thread stacks, allocators' arenas).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace sage::cluster {

// How often a watched process is checked; a process that allocates faster
// than that can briefly go beyond its limit.
constexpr auto kMemoryCheckInterval = std::chrono::milliseconds(100);

// The resident memory of process `pid` in bytes (from /proc/<pid>/statm);
// nullopt once the process is gone.
std::optional<std::uint64_t> resident_bytes(pid_t pid);

class MemoryWatch {
 public:
  // Watches process `pid`, the leader of its process group; `limit_bytes` 0
  // means no limit. `node_id` is for the verdict.
  MemoryWatch(pid_t pid, std::uint64_t limit_bytes, std::string node_id);

  // Checks the process when kMemoryCheckInterval has passed since the last
  // check, and kills its process group (SIGKILL) when it is over the limit.
  void check();

  pid_t pid() const { return pid_; }
  // Why the process was killed; empty unless it was.
  const std::string& verdict() const { return verdict_; }

 private:
  pid_t pid_;
  std::uint64_t limit_bytes_;
  std::string node_id_;
  std::chrono::steady_clock::time_point next_check_;
  std::string verdict_;
};

}  // namespace sage::cluster
