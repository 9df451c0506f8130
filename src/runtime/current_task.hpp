// Which task the calling thread runs ("map[0/4]"), so that what it writes can
// say which instance wrote it (cluster/task_output.hpp). ProcessJob sets it
// for the thread of each task; other threads have none.
#pragma once

#include <string>

namespace sage::runtime {

// The task of the calling thread, or null.
inline const std::string*& current_task() {
  static thread_local const std::string* name = nullptr;
  return name;
}

// Makes `name` the calling thread's task while it lives.
class CurrentTaskScope {
 public:
  explicit CurrentTaskScope(const std::string& name) : previous_(current_task()) {
    current_task() = &name;
  }
  ~CurrentTaskScope() { current_task() = previous_; }
  CurrentTaskScope(const CurrentTaskScope&) = delete;
  CurrentTaskScope& operator=(const CurrentTaskScope&) = delete;

 private:
  const std::string* previous_;
};

}  // namespace sage::runtime
