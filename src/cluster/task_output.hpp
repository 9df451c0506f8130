// The output of task processes, as the submitting client sees it: every line
// prefixed with where it came from, Ray-style:
//   (DistMapper[1/4] pid=6639, node=head) processing 2   a task's thread wrote it
//   (pid=6639, node=head) starting                      any other thread, or printf
// A task process marks the lines its tasks write through std::cout,
// std::cerr, std::clog and print(); the worker, which reads the process's
// output pipe, turns marks into prefixes and prefixes the other lines.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>

namespace sage::cluster {

// In a task process, while it lives: the standard C++ streams mark each line
// a task's thread writes with that task; C stdio is line-buffered so its
// lines reach the pipe whole. The streams are restored when it ends.
class TaskOutput {
 public:
  TaskOutput();
  ~TaskOutput();
  TaskOutput(const TaskOutput&) = delete;
  TaskOutput& operator=(const TaskOutput&) = delete;

 private:
  class MarkingBuffer;
  std::unique_ptr<MarkingBuffer> out_, err_, log_;
};

// A line of a task process's output (without its newline) as the client
// shows it.
std::string prefix_output_line(std::string_view line, const std::string& node_id, pid_t pid);

}  // namespace sage::cluster
