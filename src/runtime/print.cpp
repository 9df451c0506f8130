#include <iostream>
#include <mutex>

#include "sage/detail/print.hpp"

namespace sage::detail {

// Through std::cout, so that in a task process the line is marked with the
// instance that printed it (cluster/task_output.hpp).
void write_line(std::string_view line) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  std::cout.write(line.data(), static_cast<std::streamsize>(line.size()));
  std::cout.flush();
}

}  // namespace sage::detail
