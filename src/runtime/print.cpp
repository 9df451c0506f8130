#include <cstdio>
#include <mutex>

#include "sage/detail/print.hpp"

namespace sage::detail {

void write_line(std::string_view line) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

}  // namespace sage::detail
