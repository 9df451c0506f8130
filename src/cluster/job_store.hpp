// The head node's durable record of jobs and their task output, kept in an
// embedded SQLite database so `sage job list` still shows old jobs after a head
// restart. Thread-safe (one internal mutex); every method throws sage::Error
// when the database cannot be opened, read or written.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace sage::cluster {

struct JobRecord {
  std::string id;  // "job-3f9c0a1b2c4d"
  std::string name;
  std::string state;         // "PENDING", "RUNNING", "FINISHED", "FAILED", "STOPPED"
  std::string error;         // for FAILED
  std::string fingerprint;   // plan fingerprint
  std::string program_hash;  // sha256 hex of the uploaded program
  std::vector<std::string> args;
  // Unix epoch milliseconds; 0 = not yet.
  std::int64_t submitted_at_ms = 0, started_at_ms = 0, finished_at_ms = 0;
  std::string statistics;  // opaque bytes (may contain NUL): the final per-instance statistics
  friend bool operator==(const JobRecord&, const JobRecord&) = default;
};

class JobStore {
 public:
  // Opens or creates the database file and its tables; ":memory:" gives a
  // store that lives only as long as this object.
  explicit JobStore(const std::string& path);
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  // Inserts the record, or replaces the one with the same id.
  void put(const JobRecord& record);
  std::optional<JobRecord> get(const std::string& id) const;
  // Newest submitted first.
  std::vector<JobRecord> list() const;

  // Output lines of a job's task processes, in order. Returns the line number
  // (0-based) of the first appended line.
  std::int64_t append_logs(const std::string& job_id, const std::vector<std::string>& lines);
  // Lines with number >= from_line, in order, at most `limit` of them.
  std::vector<std::string> logs(const std::string& job_id, std::int64_t from_line = 0,
                                std::int64_t limit = 1'000'000) const;
  std::int64_t log_line_count(const std::string& job_id) const;

 private:
  struct Closer {
    void operator()(sqlite3* db) const;
  };

  std::string path_;
  mutable std::mutex mutex_;
  std::unique_ptr<sqlite3, Closer> db_;
};

}  // namespace sage::cluster
