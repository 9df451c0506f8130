#include "cluster/memory_watch.hpp"

#include <signal.h>
#include <unistd.h>

#include <fstream>

namespace sage::cluster {

std::optional<std::uint64_t> resident_bytes(pid_t pid) {
  // statm: size resident shared text lib data dt, in pages.
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  std::uint64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return std::nullopt;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

MemoryWatch::MemoryWatch(pid_t pid, std::uint64_t limit_bytes, std::string node_id)
    : pid_(pid), limit_bytes_(limit_bytes), node_id_(std::move(node_id)) {}

void MemoryWatch::check() {
  if (limit_bytes_ == 0 || !verdict_.empty()) return;
  const std::optional<std::uint64_t> used = resident_bytes(pid_);
  if (!used || *used <= limit_bytes_ || ::kill(-pid_, SIGKILL) != 0) return;
  verdict_ = "the task process on node '" + node_id_ + "' used " + std::to_string(*used >> 20) +
             " MiB of memory, over the " + std::to_string(limit_bytes_ >> 20) +
             " MiB its instances declare (resources.memory), and was killed; raise the "
             "operators' memory or make them use less";
}

}  // namespace sage::cluster
