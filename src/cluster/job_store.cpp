#include "cluster/job_store.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <limits>
#include <string_view>
#include <utility>

#include "sage/error.hpp"

namespace sage::cluster {
namespace {

// Bump when the schema changes, and add the migration from the previous
// version to migrate().
constexpr int kSchemaVersion = 2;

// A damaged file cannot be repaired by the head; the user must set it aside.
std::string damaged(const std::string& path, const std::string& detail) {
  return "job database " + path + " is damaged (" + detail +
         "); stop the head, move the file away (with its -wal and -shm files, e.g. mv " + path +
         " " + path +
         ".damaged) and start the head again: it makes a new, empty database, and "
         "the job history in the damaged one is lost";
}

[[noreturn]] void fail(const std::string& path, std::string_view what, sqlite3* db) {
  const int code = sqlite3_errcode(db) & 0xff;  // the primary result code
  if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) {
    throw Error(damaged(path, std::string(what) + " failed: " + sqlite3_errmsg(db)));
  }
  throw Error(
      "job database " + path + ": " + std::string(what) + " failed: " + sqlite3_errmsg(db) +
      "; check that the state directory is writable, has free space and is used by no other head");
}

struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};

// One prepared statement; binds are 1-based in the order of the `?`s.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& path, std::string_view sql) : db_(db), path_(path) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw, nullptr) !=
        SQLITE_OK) {
      fail(path_, "preparing \"" + std::string(sql) + "\"", db_);
    }
    stmt_.reset(raw);
  }

  // SQLITE_TRANSIENT because callers' strings may die before step().
  Statement& bind(int index, std::string_view bytes) {
    check(sqlite3_bind_blob64(stmt_.get(), index, bytes.data(), bytes.size(), SQLITE_TRANSIENT),
          "binding");
    return *this;
  }
  Statement& bind(int index, std::int64_t value) {
    check(sqlite3_bind_int64(stmt_.get(), index, value), "binding");
    return *this;
  }

  // True while a row is available.
  bool step() {
    int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(path_, std::string("running \"") + sqlite3_sql(stmt_.get()) + "\"", db_);
  }

  void reset() {
    sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
  }

  std::string bytes(int column) const {
    const void* data = sqlite3_column_blob(stmt_.get(), column);
    int size = sqlite3_column_bytes(stmt_.get(), column);
    return data == nullptr ? std::string() : std::string(static_cast<const char*>(data), size);
  }
  std::int64_t int64(int column) const { return sqlite3_column_int64(stmt_.get(), column); }

 private:
  void check(int rc, std::string_view what) {
    if (rc != SQLITE_OK) fail(path_, what, db_);
  }

  sqlite3* db_;
  const std::string& path_;
  std::unique_ptr<sqlite3_stmt, StmtFinalizer> stmt_;
};

void exec(sqlite3* db, const std::string& path, const char* sql) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    fail(path, std::string("running \"") + sql + "\"", db);
  }
}

// Rolls back unless committed, so an exception midway leaves no partial write.
class Transaction {
 public:
  Transaction(sqlite3* db, const std::string& path) : db_(db), path_(path) {
    // IMMEDIATE takes the write lock up front: a read-then-write (the next log
    // line number) must not race another process's writer.
    exec(db_, path_, "BEGIN IMMEDIATE");
  }
  ~Transaction() {
    if (!committed_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void commit() {
    exec(db_, path_, "COMMIT");
    committed_ = true;
  }

 private:
  sqlite3* db_;
  const std::string& path_;
  bool committed_ = false;
};

// Each arg as "<decimal length>:<bytes>", so any bytes round-trip.
std::string encode_args(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& arg : args) {
    out += std::to_string(arg.size());
    out += ':';
    out += arg;
  }
  return out;
}

std::vector<std::string> decode_args(const std::string& path, const std::string& id,
                                     std::string_view in) {
  std::vector<std::string> args;
  while (!in.empty()) {
    std::size_t colon = in.find(':');
    std::size_t size = 0;
    bool ok = colon != std::string_view::npos && colon > 0;
    for (std::size_t i = 0; ok && i < colon; ++i) {
      ok = in[i] >= '0' && in[i] <= '9' && size <= in.size();
      size = size * 10 + static_cast<std::size_t>(in[i] - '0');
    }
    if (!ok || size > in.size() - colon - 1) {
      throw Error("job database " + path + ": the stored args of job " + id +
                  " are corrupt; resubmit the job or remove the database");
    }
    args.emplace_back(in.substr(colon + 1, size));
    in.remove_prefix(colon + 1 + size);
  }
  return args;
}

// The state column is text: the state's name, as in the JSON output.
std::string state_column(rpc::JobInfo::State state) { return rpc::JobInfo::State_Name(state); }

rpc::JobInfo::State state_of_column(const std::string& text) {
  rpc::JobInfo::State state = rpc::JobInfo::STATE_UNSPECIFIED;
  rpc::JobInfo::State_Parse(text, &state);
  return state;
}

constexpr const char* kColumns =
    "id, name, state, error, fingerprint, program_hash, args, submitted_at_ms, started_at_ms, "
    "finished_at_ms, statistics";

JobRecord read_record(const Statement& row, const std::string& path) {
  JobRecord record;
  record.id = row.bytes(0);
  record.name = row.bytes(1);
  record.state = state_of_column(row.bytes(2));
  record.error = row.bytes(3);
  record.fingerprint = row.bytes(4);
  record.program_hash = row.bytes(5);
  record.args = decode_args(path, record.id, row.bytes(6));
  record.submitted_at_ms = row.int64(7);
  record.started_at_ms = row.int64(8);
  record.finished_at_ms = row.int64(9);
  record.statistics = row.bytes(10);
  return record;
}

// SQLite's quick check of every page (not of indexes against tables): a
// damaged file is refused at opening instead of failing later requests.
void check_integrity(sqlite3* db, const std::string& path) {
  constexpr int kProblemsShown = 3;
  Statement check(db, path, "PRAGMA quick_check(" + std::to_string(kProblemsShown) + ")");
  std::string problems;
  while (check.step()) {
    const std::string row = check.bytes(0);
    if (row != "ok") problems += (problems.empty() ? "" : "; ") + row;
  }
  if (!problems.empty()) throw Error(damaged(path, "quick_check found: " + problems));
}

void migrate(sqlite3* db, const std::string& path) {
  Transaction transaction(db, path);
  Statement query(db, path, "PRAGMA user_version");
  query.step();
  const std::int64_t version = query.int64(0);
  if (version > kSchemaVersion) {
    throw Error("job database " + path + " has schema version " + std::to_string(version) +
                ", newer than this sage supports (" + std::to_string(kSchemaVersion) +
                "); upgrade sage on the head node");
  }
  if (version < 1) {
    exec(db, path,
         "CREATE TABLE jobs ("
         "  id BLOB PRIMARY KEY NOT NULL, name BLOB NOT NULL, state BLOB NOT NULL,"
         "  error BLOB NOT NULL, fingerprint BLOB NOT NULL, program_hash BLOB NOT NULL,"
         "  args BLOB NOT NULL, submitted_at_ms INTEGER NOT NULL,"
         "  started_at_ms INTEGER NOT NULL, finished_at_ms INTEGER NOT NULL,"
         "  statistics BLOB NOT NULL);"
         "CREATE INDEX jobs_by_submitted ON jobs (submitted_at_ms);"
         "CREATE TABLE job_logs ("
         "  job_id BLOB NOT NULL, line INTEGER NOT NULL, text BLOB NOT NULL,"
         "  PRIMARY KEY (job_id, line)) WITHOUT ROWID;");
  }
  if (version < 2) {
    // Per job: the next line number, the first line not discarded, and the
    // bytes of the kept lines (version 1 kept every line).
    exec(db, path,
         "CREATE TABLE job_log_state ("
         "  job_id BLOB PRIMARY KEY NOT NULL, next_line INTEGER NOT NULL,"
         "  first_line INTEGER NOT NULL, bytes INTEGER NOT NULL) WITHOUT ROWID;"
         "DELETE FROM job_logs WHERE job_id NOT IN (SELECT id FROM jobs);"
         "INSERT INTO job_log_state (job_id, next_line, first_line, bytes)"
         "  SELECT job_id, MAX(line) + 1, MIN(line), SUM(LENGTH(text)) FROM job_logs"
         "  GROUP BY job_id;");
  }
  // PRAGMA takes no bound parameters; the value is our own constant.
  exec(db, path, ("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str());
  transaction.commit();
}

// A job's row of job_log_state; all zero before its first line.
struct LogState {
  std::int64_t next_line = 0, first_line = 0, bytes = 0;
};

void save_log_state(sqlite3* db, const std::string& path, const std::string& job_id,
                    const LogState& state) {
  Statement save(db, path,
                 "INSERT OR REPLACE INTO job_log_state (job_id, next_line, first_line, bytes) "
                 "VALUES (?, ?, ?, ?)");
  save.bind(1, job_id).bind(2, state.next_line).bind(3, state.first_line).bind(4, state.bytes);
  save.step();
}

LogState log_state(sqlite3* db, const std::string& path, const std::string& job_id) {
  Statement query(db, path,
                  "SELECT next_line, first_line, bytes FROM job_log_state WHERE job_id = ?");
  query.bind(1, job_id);
  if (!query.step()) return {};
  return {query.int64(0), query.int64(1), query.int64(2)};
}

// Deletes the job's oldest lines while its kept bytes exceed `max_bytes`,
// keeping the newest line whatever its size.
void discard_oldest(sqlite3* db, const std::string& path, const std::string& job_id,
                    std::uint64_t max_bytes, LogState& state) {
  if (static_cast<std::uint64_t>(state.bytes) <= max_bytes) return;
  Statement sizes(db, path,
                  "SELECT line, LENGTH(text) FROM job_logs WHERE job_id = ? AND line < ? "
                  "ORDER BY line");
  sizes.bind(1, job_id).bind(2, state.next_line - 1);
  while (static_cast<std::uint64_t>(state.bytes) > max_bytes && sizes.step()) {
    state.first_line = sizes.int64(0) + 1;
    state.bytes -= sizes.int64(1);
  }
  Statement erase(db, path, "DELETE FROM job_logs WHERE job_id = ? AND line < ?");
  erase.bind(1, job_id).bind(2, state.first_line);
  erase.step();
}

}  // namespace

void JobStore::Closer::operator()(sqlite3* db) const { sqlite3_close_v2(db); }

JobStore::JobStore(const std::string& path, std::uint64_t max_log_bytes)
    : path_(path), max_log_bytes_(max_log_bytes) {
  sqlite3* raw = nullptr;
  // sqlite hands back a handle even when opening fails; own it so it is closed.
  int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  db_.reset(raw);
  if (rc != SQLITE_OK) {
    throw Error("cannot open job database " + path + ": " +
                (raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)) +
                "; check that the state directory exists and is writable");
  }
  // Another process (a CLI reading logs) may hold the lock briefly; wait rather than fail.
  sqlite3_busy_timeout(raw, 5000);
  check_integrity(raw, path_);
  // WAL lets readers proceed while the head appends logs. An in-memory
  // database answers "memory", which is fine.
  exec(raw, path_, "PRAGMA journal_mode = WAL");
  migrate(raw, path_);
  discard_over_limit();
}

void JobStore::discard_over_limit() {
  Transaction transaction(db_.get(), path_);
  std::vector<std::pair<std::string, LogState>> over;
  {
    Statement query(
        db_.get(), path_,
        "SELECT job_id, next_line, first_line, bytes FROM job_log_state WHERE bytes > ?");
    query.bind(1, static_cast<std::int64_t>(std::min<std::uint64_t>(
                      max_log_bytes_, std::numeric_limits<std::int64_t>::max())));
    while (query.step()) {
      over.emplace_back(query.bytes(0), LogState{query.int64(1), query.int64(2), query.int64(3)});
    }
  }
  for (auto& [job_id, state] : over) {
    discard_oldest(db_.get(), path_, job_id, max_log_bytes_, state);
    save_log_state(db_.get(), path_, job_id, state);
  }
  transaction.commit();
}

JobStore::~JobStore() = default;

void JobStore::put(const JobRecord& record) {
  std::lock_guard lock(mutex_);
  Statement insert(db_.get(), path_,
                   std::string("INSERT OR REPLACE INTO jobs (") + kColumns +
                       ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  insert.bind(1, record.id)
      .bind(2, record.name)
      .bind(3, state_column(record.state))
      .bind(4, record.error)
      .bind(5, record.fingerprint)
      .bind(6, record.program_hash)
      .bind(7, encode_args(record.args))
      .bind(8, record.submitted_at_ms)
      .bind(9, record.started_at_ms)
      .bind(10, record.finished_at_ms)
      .bind(11, record.statistics);
  insert.step();
}

std::optional<JobRecord> JobStore::get(const std::string& id) const {
  std::lock_guard lock(mutex_);
  Statement query(db_.get(), path_, std::string("SELECT ") + kColumns + " FROM jobs WHERE id = ?");
  query.bind(1, id);
  if (!query.step()) return std::nullopt;
  return read_record(query, path_);
}

std::vector<JobRecord> JobStore::list() const {
  std::lock_guard lock(mutex_);
  // Tie-break on id so jobs submitted in the same millisecond list stably.
  Statement query(
      db_.get(), path_,
      std::string("SELECT ") + kColumns + " FROM jobs ORDER BY submitted_at_ms DESC, id DESC");
  std::vector<JobRecord> records;
  while (query.step()) records.push_back(read_record(query, path_));
  return records;
}

void JobStore::remove(const std::string& id) {
  std::lock_guard lock(mutex_);
  Transaction transaction(db_.get(), path_);
  for (const char* sql : {"DELETE FROM jobs WHERE id = ?", "DELETE FROM job_logs WHERE job_id = ?",
                          "DELETE FROM job_log_state WHERE job_id = ?"}) {
    Statement erase(db_.get(), path_, sql);
    erase.bind(1, id);
    erase.step();
  }
  transaction.commit();
}

std::optional<std::int64_t> JobStore::append_logs(const std::string& job_id,
                                                  const std::vector<std::string>& lines) {
  std::lock_guard lock(mutex_);
  Transaction transaction(db_.get(), path_);
  Statement known(db_.get(), path_, "SELECT 1 FROM jobs WHERE id = ?");
  known.bind(1, job_id);
  if (!known.step()) return std::nullopt;
  LogState state = log_state(db_.get(), path_, job_id);
  const std::int64_t first = state.next_line;
  if (lines.empty()) return first;
  Statement insert(db_.get(), path_, "INSERT INTO job_logs (job_id, line, text) VALUES (?, ?, ?)");
  for (const std::string& line : lines) {
    insert.bind(1, job_id).bind(2, state.next_line++).bind(3, line);
    insert.step();
    insert.reset();
    state.bytes += static_cast<std::int64_t>(line.size());
  }
  discard_oldest(db_.get(), path_, job_id, max_log_bytes_, state);
  save_log_state(db_.get(), path_, job_id, state);
  transaction.commit();
  return first;
}

LogPage JobStore::logs(const std::string& job_id, std::int64_t from_line,
                       std::int64_t limit) const {
  std::lock_guard lock(mutex_);
  LogPage page;
  page.first_line = std::max(from_line, log_state(db_.get(), path_, job_id).first_line);
  // SQLite reads a negative LIMIT as "no limit"; the caller asked for none.
  if (limit <= 0) return page;
  Statement query(db_.get(), path_,
                  "SELECT text FROM job_logs WHERE job_id = ? AND line >= ? ORDER BY line LIMIT ?");
  query.bind(1, job_id).bind(2, page.first_line).bind(3, limit);
  while (query.step()) page.lines.push_back(query.bytes(0));
  return page;
}

std::int64_t JobStore::log_line_count(const std::string& job_id) const {
  std::lock_guard lock(mutex_);
  return log_state(db_.get(), path_, job_id).next_line;
}

}  // namespace sage::cluster
