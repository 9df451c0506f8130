// The head node's durable record of jobs and their task output, kept in an
// embedded SQLite database so `sage job list` still shows old jobs after a head
// restart. A job's output is bounded: beyond a byte limit its oldest lines are
// discarded, and readers are told how many. Thread-safe (one internal mutex);
// every method throws sage::Error when the database cannot be opened, read or
// written.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "sage.pb.h"

struct sqlite3;

namespace sage::cluster {

struct JobRecord {
  std::string id;  // "job-3f9c0a1b2c4d"
  std::string name;
  // Stored as its name ("RUNNING"), as the column held before states were
  // typed; a name this version does not know reads as STATE_UNSPECIFIED.
  rpc::JobInfo::State state = rpc::JobInfo::STATE_UNSPECIFIED;
  std::string error;         // for FAILED
  std::string fingerprint;   // plan fingerprint
  std::string program_hash;  // sha256 hex of the uploaded program
  std::vector<std::string> args;
  // Unix epoch milliseconds; 0 = not yet.
  std::int64_t submitted_at_ms = 0, started_at_ms = 0, finished_at_ms = 0;
  std::string statistics;  // opaque bytes (may contain NUL): the final per-instance statistics
  friend bool operator==(const JobRecord&, const JobRecord&) = default;
};

// Lines of a job's output, from a reader's position on.
struct LogPage {
  // The number of lines[0]. Greater than the position asked for when the lines
  // in between were discarded to keep the job's output within its limit.
  std::int64_t first_line = 0;
  std::vector<std::string> lines;
};

class JobStore {
 public:
  // Opens or creates the database file and its tables (upgrading older ones),
  // after SQLite's quick check: a damaged file is refused with a message that
  // says how to set it aside (here and from any later call that meets damage);
  // ":memory:" gives a store that lives only as long as this object. Each job
  // keeps at most `max_log_bytes` of output (its newest line always), also
  // the output stored under a larger limit before.
  explicit JobStore(const std::string& path,
                    std::uint64_t max_log_bytes = std::numeric_limits<std::uint64_t>::max());
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  // Inserts the record, or replaces the one with the same id.
  void put(const JobRecord& record);
  std::optional<JobRecord> get(const std::string& id) const;
  // Newest submitted first.
  std::vector<JobRecord> list() const;
  // Deletes the job's record and output; nothing if there is none.
  void remove(const std::string& id);

  // Output lines of a job's task processes, in order. Returns the line number
  // (0-based) of the first appended line; nullopt, storing nothing, when
  // there is no record of the job (it was removed). Discards the job's oldest
  // lines while its output is over the limit.
  std::optional<std::int64_t> append_logs(const std::string& job_id,
                                          const std::vector<std::string>& lines);
  // The kept lines numbered from_line on, in order, at most `limit` of them.
  LogPage logs(const std::string& job_id, std::int64_t from_line = 0,
               std::int64_t limit = 1'000'000) const;
  // The number the next appended line will get: lines ever appended.
  std::int64_t log_line_count(const std::string& job_id) const;

 private:
  struct Closer {
    void operator()(sqlite3* db) const;
  };

  // At opening: trims the output of jobs over the limit.
  void discard_over_limit();

  std::string path_;
  std::uint64_t max_log_bytes_;
  mutable std::mutex mutex_;
  std::unique_ptr<sqlite3, Closer> db_;
};

}  // namespace sage::cluster
