// The sink behind DataStream<T>::write_text(directory): one line per record
// (operator<< and '\n'), written exactly once through a two-phase commit on
// checkpoints. An instance is used by its task's thread only.
//
// Files, in `directory`, for parallel instance i:
//   .part-i-000007.inprogress   being written, or written and awaiting commit
//   part-i-000007               committed: the only files a reader should see
// The sequence number grows per instance and a committed name is never used
// again: a restart goes on from its checkpoint's number, a new job from after
// the highest committed file in the directory.
//
// Lifecycle (the engine's order, notes in functions.hpp):
// - save_state (a checkpoint barrier): the file being written is fsynced,
//   closed and becomes pending; the state lists every pending file and the
//   next sequence number. The next record opens a new file (no empty files).
// - notify_checkpoint_complete(n): every pending file recorded by the save
//   of a checkpoint up to n is committed by rename (atomic, idempotent), then
//   the directory is fsynced. Files of a later checkpoint stay pending.
// - restore_state (after open(), when the job restarts from a completed
//   checkpoint): the files that checkpoint lists are committed (some may
//   already be); this instance's other in-progress files were written after
//   it, their records will be replayed, so they are deleted.
// - close(): the last file becomes pending. Without checkpoints (the job's
//   ExecutionConfig::checkpoint_interval is 0) it is committed at once: the
//   engine will call neither save_state nor notify. With checkpoints it stays
//   pending even when no checkpoint happened yet: the engine takes a final
//   checkpoint after close() and its notification commits it.
//
// A fresh start (no restore_state before the first record, checkpoint or
// close) deletes this instance's in-progress files left by an earlier run:
// nothing can commit them any more, since only a restore of that run could.
// open() cannot do it, since a restore may follow and need them. Committed
// files are never deleted or overwritten.
//
// One job at a time writes into a directory, one write_text operator per directory, and
// a restart finds the same directory (a path shared by all nodes, on a
// cluster). Errors throw sage::Error naming the file and the OS's reason; the
// engine fails the instance with it.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <ostream>
#include <streambuf>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "sage/detail/crash_point.hpp"
#include "sage/detail/print.hpp"
#include "sage/error.hpp"
#include "sage/runtime_context.hpp"
#include "sage/serialization.hpp"

namespace sage::detail {

// The untyped part of write_text: part files, their commit, and the state of
// one instance. TextFileSink<T> formats the records.
class TextPartWriter {
 public:
  // `checkpointing`: whether the job takes checkpoints (then close() leaves
  // the last file to the final checkpoint's notification).
  TextPartWriter(std::string directory, bool checkpointing)
      : directory_(std::move(directory)), checkpointing_(checkpointing) {}
  TextPartWriter(const TextPartWriter&) = delete;
  TextPartWriter& operator=(const TextPartWriter&) = delete;
  // Without close() (the job failed or was cancelled): the files stay as they
  // are, for a restore to commit or discard.
  ~TextPartWriter() {
    if (current_) ::close(current_->fd);
  }

  void open(RuntimeContext& ctx) {
    instance_ = ctx.parallel_index();
    instance_name_ = ctx.instance_name();
    std::error_code error;
    std::filesystem::create_directories(directory_, error);
    if (error) {
      throw Error("write_text: cannot create the directory '" + directory_.string() +
                  "': " + error.message());
    }
  }

  void save_state(Writer& out, std::uint64_t checkpoint_id) {
    start();
    if (current_) finish_current();
    // The names of files closed since the last checkpoint must survive a
    // machine crash too.
    if (!pending_.empty() && pending_.back().checkpoint == 0) sync_directory();
    State state{kStateFormat, instance_, next_sequence_, {}};
    for (Pending& file : pending_) {
      if (file.checkpoint == 0) file.checkpoint = checkpoint_id;
      state.pending.push_back(file.sequence);
    }
    out.write(state);
  }

  void restore_state(Reader& in) {
    const auto state = in.read<State>();
    if (state.format != kStateFormat) {
      throw Error("write_text: checkpoint state of format " + std::to_string(state.format) +
                  ", this version reads format " + std::to_string(kStateFormat));
    }
    if (state.instance != instance_) {
      throw Error("write_text: the checkpoint of instance " + std::to_string(state.instance) +
                  " was restored into instance " + std::to_string(instance_) +
                  "; a write_text sink cannot change its parallelism across a restart");
    }
    for (std::uint64_t sequence : state.pending) commit(sequence);
    if (!state.pending.empty()) sync_directory();
    next_sequence_ = std::max(next_sequence_, state.next_sequence);
    start();
  }

  void notify_checkpoint_complete(std::uint64_t checkpoint_id) {
    // Oldest first, and recorded in the order of the checkpoints.
    const auto first_not_covered =
        std::find_if(pending_.begin(), pending_.end(), [&](const Pending& file) {
          return file.checkpoint == 0 || file.checkpoint > checkpoint_id;
        });
    if (first_not_covered == pending_.begin()) return;
    for (auto it = pending_.begin(); it != first_not_covered; ++it) {
      commit(it->sequence);
      crash_point("in-commit", checkpoint_id, instance_name_);
    }
    pending_.erase(pending_.begin(), first_not_covered);
    sync_directory();
  }

  void close() {
    start();
    if (current_) finish_current();
    if (checkpointing_ || pending_.empty()) return;
    for (const Pending& file : pending_) commit(file.sequence);
    pending_.clear();
    sync_directory();
  }

 protected:
  // Where a record's line is formatted; flushed to the file by end_line().
  std::ostream& line() {
    start();
    if (!current_) open_next();
    return stream_;
  }
  void end_line() {
    if (!stream_) {
      stream_.clear();
      throw Error("write_text: writing a record to '" + current_->path.string() +
                  "' failed: its operator<< set the stream's error state");
    }
    stream_.put('\n');
    if (buffer_.size() >= kWriteBufferBytes) write_buffer();
  }

 private:
  // Bytes gathered before one write(2).
  static constexpr std::size_t kWriteBufferBytes = 64 * 1024;
  // Digits of the sequence number in a file name (more when it outgrows them).
  static constexpr std::size_t kSequenceDigits = 6;
  static constexpr std::uint32_t kStateFormat = 1;

  // What a checkpoint holds for one instance.
  struct State {
    std::uint32_t format = kStateFormat;
    int instance = 0;
    std::uint64_t next_sequence = 0;
    std::vector<std::uint64_t> pending;  // written and synced, not known to be committed
    SAGE_FIELDS(format, instance, next_sequence, pending)
  };
  struct Pending {
    std::uint64_t sequence = 0;
    // The checkpoint whose save first listed it (0: none yet): its
    // completion commits the file.
    std::uint64_t checkpoint = 0;
  };
  struct OpenFile {
    std::uint64_t sequence = 0;
    std::filesystem::path path;
    int fd = -1;
  };

  // Appends whatever the stream formats to the buffer.
  class AppendToString : public std::streambuf {
   public:
    explicit AppendToString(std::string& out) : out_(&out) {}

   protected:
    int_type overflow(int_type c) override {
      if (!traits_type::eq_int_type(c, traits_type::eof())) {
        out_->push_back(traits_type::to_char_type(c));
      }
      return traits_type::not_eof(c);
    }
    std::streamsize xsputn(const char* s, std::streamsize n) override {
      out_->append(s, static_cast<std::size_t>(n));
      return n;
    }

   private:
    std::string* out_;
  };

  std::string visible_name(std::uint64_t sequence) const {
    std::string digits = std::to_string(sequence);
    if (digits.size() < kSequenceDigits) digits.insert(0, kSequenceDigits - digits.size(), '0');
    return "part-" + std::to_string(instance_) + "-" + digits;
  }
  std::string hidden_name(std::uint64_t sequence) const {
    return "." + visible_name(sequence) + ".inprogress";
  }
  // The sequence number of `name` if it is "<prefix><digits><suffix>".
  static std::optional<std::uint64_t> sequence_of(std::string_view name, std::string_view prefix,
                                                  std::string_view suffix) {
    if (name.size() <= prefix.size() + suffix.size() || !name.starts_with(prefix) ||
        !name.ends_with(suffix)) {
      return std::nullopt;
    }
    const std::string_view digits =
        name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    std::uint64_t sequence = 0;
    const auto [end, error] =
        std::from_chars(digits.data(), digits.data() + digits.size(), sequence);
    if (error != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
    return sequence;
  }

  // Once, before the first file: deletes this instance's in-progress files
  // (on a restore, those its checkpoint did not list, all committed by now)
  // and numbers the next file after every committed one.
  void start() {
    if (started_) return;
    const std::string visible_prefix = "part-" + std::to_string(instance_) + "-";
    const std::string hidden_prefix = "." + visible_prefix;
    std::error_code error;
    for (std::filesystem::directory_iterator it(directory_, error), end; !error && it != end;
         it.increment(error)) {
      const std::string name = it->path().filename().string();
      if (sequence_of(name, hidden_prefix, ".inprogress")) {
        std::error_code removed;
        std::filesystem::remove(it->path(), removed);
        if (removed) {
          throw Error("write_text: cannot delete the in-progress file '" + it->path().string() +
                      "' of an earlier attempt: " + removed.message());
        }
      } else if (const auto sequence = sequence_of(name, visible_prefix, "")) {
        next_sequence_ = std::max(next_sequence_, *sequence + 1);
      }
    }
    if (error) {
      throw Error("write_text: cannot list the directory '" + directory_.string() +
                  "': " + error.message());
    }
    started_ = true;
  }

  void open_next() {
    const std::uint64_t sequence = next_sequence_++;
    std::filesystem::path path = directory_ / hidden_name(sequence);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail("cannot create", path);
    current_ = OpenFile{sequence, std::move(path), fd};
  }

  void write_buffer() {
    std::string_view rest = buffer_;
    while (!rest.empty()) {
      const ssize_t n = ::write(current_->fd, rest.data(), rest.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("cannot write", current_->path);
      }
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
    buffer_.clear();
  }

  // Writes, syncs and closes the current file; it becomes pending.
  void finish_current() {
    write_buffer();
    if (::fsync(current_->fd) != 0) fail("cannot sync", current_->path);
    const int fd = std::exchange(current_->fd, -1);
    if (::close(fd) != 0) fail("cannot close", current_->path);
    pending_.push_back(Pending{current_->sequence, 0});
    current_.reset();
  }

  // Renames the file to its visible name; done already if only that exists.
  void commit(std::uint64_t sequence) {
    const std::filesystem::path hidden = directory_ / hidden_name(sequence);
    const std::filesystem::path visible = directory_ / visible_name(sequence);
    if (::rename(hidden.c_str(), visible.c_str()) == 0) return;
    if (errno != ENOENT) fail("cannot commit", hidden);
    std::error_code error;
    if (std::filesystem::exists(visible, error)) return;
    throw Error("write_text: cannot commit '" + hidden.string() + "': neither it nor '" +
                visible.string() +
                "' exists. A restarted job must find the directory its checkpoint was taken "
                "with: on a cluster, a path every node shares");
  }

  void sync_directory() {
    const int fd = ::open(directory_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail("cannot open", directory_);
    const int synced = ::fsync(fd);
    const int saved_errno = errno;
    ::close(fd);
    errno = saved_errno;
    if (synced != 0) fail("cannot sync", directory_);
  }

  // Throws for the failed system call that set errno.
  [[noreturn]] static void fail(const char* what, const std::filesystem::path& path) {
    const std::string reason = std::strerror(errno);
    throw Error(std::string("write_text: ") + what + " '" + path.string() + "': " + reason);
  }

  std::filesystem::path directory_;
  bool checkpointing_;
  int instance_ = 0;
  std::string instance_name_;  // for crash points
  bool started_ = false;
  std::uint64_t next_sequence_ = 0;
  std::optional<OpenFile> current_;
  std::vector<Pending> pending_;  // oldest first, so by checkpoint (those of none last)
  std::string buffer_;
  AppendToString append_{buffer_};
  std::ostream stream_{&append_};
};

// write_text's function class for records of type T.
template <class T>
class TextFileSink : public TextPartWriter {
 public:
  static_assert(Streamable<T>,
                "sage: write_text writes each record with operator<<; define "
                "operator<<(std::ostream&, const T&) for this record type");
  using TextPartWriter::TextPartWriter;

  void sink(const T& record) {
    line() << record;
    end_line();
  }
};

}  // namespace sage::detail
