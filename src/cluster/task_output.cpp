#include "cluster/task_output.hpp"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <streambuf>

#include "net/rpc.hpp"
#include "runtime/current_task.hpp"

namespace sage::cluster {
namespace {

// A marked line: kMark, the task's name, kMark, the text. A record separator
// does not occur in operator names or in ordinary text.
constexpr char kMark = '\x1e';

// Writes all of `bytes` to `fd`; one writer at a time, so lines stay whole.
void write_whole(int fd, std::string_view bytes) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the worker is gone; there is no one to tell
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

// Collects each thread's text up to a newline and writes it as one line,
// marked when the thread runs a task.
class TaskOutput::MarkingBuffer final : public std::streambuf {
 public:
  MarkingBuffer(std::ostream& stream, int fd, int slot)
      : stream_(stream), previous_(stream.rdbuf(this)), fd_(fd), slot_(slot) {}
  ~MarkingBuffer() override {
    sync();
    stream_.rdbuf(previous_);
  }

 protected:
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    const char ch = traits_type::to_char_type(c);
    xsputn(&ch, 1);
    return c;
  }

  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::string& line = pending();
    std::string_view text(s, static_cast<std::size_t>(n));
    while (!text.empty()) {
      const std::size_t end = text.find('\n');
      const std::size_t room = kMaxOutputLineBytes - line.size();
      if (end == std::string_view::npos && text.size() <= room) {
        line.append(text);
        break;
      }
      // A newline, or a line grown to the longest passed on whole: cut
      // between characters (continuation bytes are 10xxxxxx).
      std::size_t take = std::min(end == std::string_view::npos ? room : end, room);
      for (int back = 0; take == room && take > 0 && take < text.size() && back < 3 &&
                         (static_cast<unsigned char>(text[take]) & 0xc0) == 0x80;
           ++back) {
        --take;
      }
      line.append(text.substr(0, take));
      emit(line);
      text.remove_prefix(take < end || end == std::string_view::npos ? take : take + 1);
    }
    return n;
  }

 private:
  // This thread's unfinished lines, one per stream; written out unmarked if
  // the thread ends before it finishes them, as a plain stream would.
  struct Pending {
    std::string lines[3];
    ~Pending() {
      for (int slot = 0; slot < 3; ++slot) {
        if (!lines[slot].empty())
          write_whole(slot == 0 ? STDOUT_FILENO : STDERR_FILENO, lines[slot] + '\n');
      }
    }
  };
  std::string& pending() const {
    static thread_local Pending pending;
    return pending.lines[slot_];
  }

  void emit(std::string& line) {
    std::string out;
    if (const std::string* task = runtime::current_task()) {
      out += kMark;
      out.append(*task, 0, kMaxMarkBytes - 2);
      out += kMark;
    }
    out += line;
    out += '\n';
    write_whole(fd_, out);
    line.clear();
  }

  std::ostream& stream_;
  std::streambuf* previous_;
  int fd_;
  int slot_;
};

// Slot 0 writes to standard output, 1 and 2 to standard error (see Pending).
TaskOutput::TaskOutput()
    : out_(std::make_unique<MarkingBuffer>(std::cout, STDOUT_FILENO, 0)),
      err_(std::make_unique<MarkingBuffer>(std::cerr, STDERR_FILENO, 1)),
      log_(std::make_unique<MarkingBuffer>(std::clog, STDERR_FILENO, 2)) {
  std::fflush(stdout);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
}

TaskOutput::~TaskOutput() = default;

std::string prefix_output_line(std::string_view line, const std::string& node_id, pid_t pid) {
  const std::string where = "pid=" + std::to_string(pid) + ", node=" + node_id + ") ";
  if (line.size() >= 2 && line.front() == kMark) {
    const std::size_t end = line.find(kMark, 1);
    if (end != std::string_view::npos) {
      return "(" + std::string(line.substr(1, end - 1)) + " " + where +
             std::string(line.substr(end + 1));
    }
  }
  return "(" + where + std::string(line);
}

void OutputLines::emit(std::string_view line, std::vector<std::string>* lines) const {
  lines->push_back(prefix_output_line(net::valid_utf8(line), node_id_, pid_));
}

void OutputLines::add(std::string_view bytes, std::vector<std::string>* lines) {
  constexpr std::size_t kLongest = kMaxOutputLineBytes + kMaxMarkBytes;
  pending_.append(bytes);
  std::size_t start = 0;
  while (true) {
    const std::size_t end = pending_.find('\n', start);
    if (end != std::string::npos && end - start <= kLongest) {
      emit(std::string_view(pending_).substr(start, end - start), lines);
      start = end + 1;
      continue;
    }
    if (pending_.size() - start <= kLongest) break;
    // Too long: cut, but not inside a character (continuation bytes are 10xxxxxx).
    std::size_t cut = start + kLongest;
    for (int back = 0; back < 3 && (static_cast<unsigned char>(pending_[cut]) & 0xc0) == 0x80;
         ++back) {
      --cut;
    }
    emit(std::string_view(pending_).substr(start, cut - start), lines);
    start = cut;
  }
  pending_.erase(0, start);
}

void OutputLines::finish(std::vector<std::string>* lines) {
  if (!pending_.empty()) emit(pending_, lines);
  pending_.clear();
}

}  // namespace sage::cluster
