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
#include <vector>

namespace sage::cluster {

// The longest line passed on whole; longer ones are cut into pieces this long.
constexpr std::size_t kMaxOutputLineBytes = 64 << 10;
// A task's mark adds at most this much to a line (names are cut to fit).
constexpr std::size_t kMaxMarkBytes = 1024;

// In a task process, while it lives: the standard C++ streams mark each line
// a task's thread writes with that task; C stdio is line-buffered so its
// lines reach the pipe whole. A line goes out at its newline (flushes do not
// end it: std::cerr flushes after every <<), at kMaxOutputLineBytes, or
// when its thread ends. The streams are restored when it ends.
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

// The worker's side: turns the bytes a task process writes into the lines the
// client sees: split at newlines, and at kMaxOutputLineBytes plus a mark
// (never inside a UTF-8 character), bytes that are not UTF-8 shown as U+FFFD,
// prefixed.
class OutputLines {
 public:
  OutputLines(std::string node_id, pid_t pid) : node_id_(std::move(node_id)), pid_(pid) {}
  // Appends the lines `bytes` completes to `lines`.
  void add(std::string_view bytes, std::vector<std::string>* lines);
  // The output ended: its unfinished last line, if any.
  void finish(std::vector<std::string>* lines);

 private:
  void emit(std::string_view line, std::vector<std::string>* lines) const;
  std::string node_id_;
  pid_t pid_;
  std::string pending_;
};

}  // namespace sage::cluster
