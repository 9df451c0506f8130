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

// How often the worker checks its task processes; a process that allocates
// faster than that can briefly go beyond its limit.
constexpr auto kMemoryCheckInterval = std::chrono::milliseconds(100);

// The resident memory of process `pid` in bytes (from /proc/<pid>/statm),
// counting every page it has touched: its heap and stacks, and the pages of
// libraries and files it mapped. Nullopt once the process is reaped; 0 while
// it is a zombie.
std::optional<std::uint64_t> resident_bytes(pid_t pid);

class MemoryWatch {
 public:
  // Watches process `pid`, the leader of its process group; `limit_bytes` 0
  // means no limit. `node_id` is for the verdict. The caller keeps the pid
  // from being reused (does not reap it) while it calls check().
  MemoryWatch(pid_t pid, std::uint64_t limit_bytes, std::string node_id);

  // Kills the process group (SIGKILL) when the process is over its limit.
  void check();

  // Why the process was killed; empty unless it was.
  const std::string& verdict() const { return verdict_; }

 private:
  pid_t pid_;
  std::uint64_t limit_bytes_;
  std::string node_id_;
  std::string verdict_;
};

}  // namespace sage::cluster
