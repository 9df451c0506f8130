#include "cluster/job_store.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "sage/error.hpp"
#include "support/temp_dir.hpp"

namespace sage::cluster {
namespace {

using namespace std::string_literals;

using testing::TempDir;

JobRecord full_record() {
  JobRecord record;
  record.id = "job-3f9c0a1b2c4d";
  record.name = "word count";
  record.state = rpc::JobInfo::FAILED;
  record.error = "operator map[2] threw: boom";
  record.fingerprint = "fp-0123456789abcdef";
  record.program_hash = std::string(64, 'a');
  record.args = {"--input", "a\nb\r\nc", "say \"hi\" 'there'", "", "12:34:", "tab\there"};
  record.submitted_at_ms = 1'700'000'000'000;
  record.started_at_ms = 1'700'000'000'500;
  record.finished_at_ms = 1'700'000'009'000;
  record.statistics = "\0\x01stats\0\xff"s;
  return record;
}

JobRecord record_submitted_at(const std::string& id, std::int64_t submitted_at_ms) {
  JobRecord record;
  record.id = id;
  record.state = rpc::JobInfo::PENDING;
  record.submitted_at_ms = submitted_at_ms;
  return record;
}

std::vector<std::string> ids(const std::vector<JobRecord>& records) {
  std::vector<std::string> out;
  for (const auto& record : records) out.push_back(record.id);
  return out;
}

TEST(JobStoreTest, RoundTripsEveryField) {
  JobStore store(":memory:");
  const JobRecord record = full_record();
  ASSERT_EQ(record.statistics.size(), 9u);  // the NULs really are in it
  store.put(record);
  EXPECT_EQ(store.get(record.id), record);
  EXPECT_EQ(store.get("job-missing"), std::nullopt);
}

TEST(JobStoreTest, RoundTripsEmptyArgsAndDefaults) {
  JobStore store(":memory:");
  JobRecord record;
  record.id = "job-empty";
  store.put(record);
  EXPECT_EQ(store.get(record.id), record);
}

TEST(JobStoreTest, PutTwiceReplaces) {
  JobStore store(":memory:");
  JobRecord record = full_record();
  store.put(record);
  record.state = rpc::JobInfo::RUNNING;
  record.error.clear();
  record.args = {"only"};
  store.put(record);
  EXPECT_EQ(store.get(record.id), record);
  EXPECT_EQ(store.list().size(), 1u);
}

TEST(JobStoreTest, ListsNewestSubmittedFirst) {
  JobStore store(":memory:");
  store.put(record_submitted_at("job-b", 200));
  store.put(record_submitted_at("job-a", 300));
  store.put(record_submitted_at("job-c", 100));
  EXPECT_EQ(ids(store.list()), (std::vector<std::string>{"job-a", "job-b", "job-c"}));
}

TEST(JobStoreTest, RecordsAndLogsSurviveReopening) {
  TempDir dir;
  const std::string path = dir.file("jobs.db");
  const JobRecord record = full_record();
  {
    JobStore store(path);
    store.put(record);
    store.put(record_submitted_at("job-new", record.submitted_at_ms + 1));
    store.append_logs(record.id, {"first", "second\0line"s});
  }
  JobStore store(path);
  EXPECT_EQ(store.get(record.id), record);
  EXPECT_EQ(ids(store.list()), (std::vector<std::string>{"job-new", record.id}));
  EXPECT_EQ(store.logs(record.id).lines, (std::vector<std::string>{"first", "second\0line"s}));
  EXPECT_EQ(store.append_logs(record.id, {"third"}), 2);
}

TEST(JobStoreTest, AppendReturnsConsecutiveLineNumbersAndLogsPage) {
  JobStore store(":memory:");
  store.put(record_submitted_at("job-1", 1));
  store.put(record_submitted_at("job-2", 2));
  EXPECT_EQ(store.log_line_count("job-1"), 0);
  EXPECT_EQ(store.append_logs("job-1", {"l0", "l1", "l2"}), 0);
  EXPECT_EQ(store.append_logs("job-2", {"other"}), 0);
  EXPECT_EQ(store.append_logs("job-1", {}), 3);
  EXPECT_EQ(store.append_logs("job-1", {"l3", "l4"}), 3);
  EXPECT_EQ(store.log_line_count("job-1"), 5);
  EXPECT_EQ(store.log_line_count("job-2"), 1);

  EXPECT_EQ(store.logs("job-1").lines, (std::vector<std::string>{"l0", "l1", "l2", "l3", "l4"}));
  EXPECT_EQ(store.logs("job-1", 0, 2).lines, (std::vector<std::string>{"l0", "l1"}));
  EXPECT_EQ(store.logs("job-1", 2, 2).lines, (std::vector<std::string>{"l2", "l3"}));
  EXPECT_EQ(store.logs("job-1", 2, 2).first_line, 2);
  EXPECT_EQ(store.logs("job-1", 4, 2).lines, (std::vector<std::string>{"l4"}));
  EXPECT_TRUE(store.logs("job-1", 5, 2).lines.empty());
  EXPECT_TRUE(store.logs("job-1", 0, 0).lines.empty());
  EXPECT_TRUE(store.logs("job-missing").lines.empty());
  EXPECT_EQ(store.logs("job-missing").first_line, 0);
}

TEST(JobStoreTest, UnopenablePathThrowsNamingThePath) {
  const std::string path = "/tmp/sage_no_such_dir_for_job_store/sub/jobs.db";
  try {
    JobStore store(path);
    FAIL() << "expected sage::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(JobStoreTest, ConcurrentAppendsLoseNoLine) {
  TempDir dir;
  JobStore store(dir.file("jobs.db"));
  store.put(record_submitted_at("job-1", 1));
  constexpr int kThreads = 4;
  constexpr int kBatches = 50;
  constexpr int kLinesPerBatch = 5;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&store, t] {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<std::string> lines;
        for (int l = 0; l < kLinesPerBatch; ++l) {
          lines.push_back(std::to_string(t) + "/" + std::to_string(b) + "/" + std::to_string(l));
        }
        store.append_logs("job-1", lines);
      }
    });
  }
  for (auto& thread : threads) thread.join();

  const std::vector<std::string> lines = store.logs("job-1").lines;
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(kThreads * kBatches * kLinesPerBatch));
  EXPECT_EQ(store.log_line_count("job-1"), static_cast<std::int64_t>(lines.size()));
  // Every line is present once, and each thread's lines keep their order.
  std::vector<int> next(kThreads, 0);
  for (const auto& line : lines) {
    const int t = line[0] - '0';
    const int expected = next[t]++;
    EXPECT_EQ(line, std::to_string(t) + "/" + std::to_string(expected / kLinesPerBatch) + "/" +
                        std::to_string(expected % kLinesPerBatch));
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next[t], kBatches * kLinesPerBatch);
}

TEST(JobStoreTest, OutputOverTheLimitLosesItsOldestLinesAndSaysHowMany) {
  JobStore store(":memory:", /*max_log_bytes=*/10);
  store.put(record_submitted_at("job-1", 1));
  store.put(record_submitted_at("job-2", 2));
  store.append_logs("job-1", {"aaaa", "bbbb"});
  EXPECT_EQ(store.logs("job-1").lines, (std::vector<std::string>{"aaaa", "bbbb"}));
  // 12 bytes: the oldest line goes.
  EXPECT_EQ(store.append_logs("job-1", {"cccc"}), 2);
  LogPage page = store.logs("job-1");
  EXPECT_EQ(page.first_line, 1);
  EXPECT_EQ(page.lines, (std::vector<std::string>{"bbbb", "cccc"}));
  // A reader past the discarded lines sees no gap.
  EXPECT_EQ(store.logs("job-1", 2).first_line, 2);
  // A line longer than the limit is kept alone, and numbering goes on.
  EXPECT_EQ(store.append_logs("job-1", {"dd", std::string(25, 'e')}), 3);
  page = store.logs("job-1", 1);
  EXPECT_EQ(page.first_line, 4);
  EXPECT_EQ(page.lines, (std::vector<std::string>{std::string(25, 'e')}));
  EXPECT_EQ(store.log_line_count("job-1"), 5);
  EXPECT_EQ(store.append_logs("job-1", {"f"}), 5);
  EXPECT_EQ(store.logs("job-1").lines, (std::vector<std::string>{"f"}));
  EXPECT_EQ(store.logs("job-1").first_line, 5);
  // Other jobs have limits of their own.
  store.append_logs("job-2", {"1234567890"});
  EXPECT_EQ(store.logs("job-2").lines, (std::vector<std::string>{"1234567890"}));
}

TEST(JobStoreTest, OutputOfAJobWithoutARecordIsNotStored) {
  JobStore store(":memory:");
  EXPECT_EQ(store.append_logs("job-unknown", {"lost"}), std::nullopt);
  EXPECT_TRUE(store.logs("job-unknown").lines.empty());
  EXPECT_EQ(store.log_line_count("job-unknown"), 0);
}

TEST(JobStoreTest, OpeningWithALowerLimitDiscardsTheOldestOutputOverIt) {
  TempDir dir;
  const std::string path = dir.file("jobs.db");
  {
    JobStore store(path);
    store.put(record_submitted_at("job-1", 1));
    store.put(record_submitted_at("job-2", 2));
    store.append_logs("job-1", {"aaaa", "bbbb", "cccc"});
    store.append_logs("job-2", {"dd"});
  }
  JobStore store(path, /*max_log_bytes=*/8);
  EXPECT_EQ(store.logs("job-1").first_line, 1);
  EXPECT_EQ(store.logs("job-1").lines, (std::vector<std::string>{"bbbb", "cccc"}));
  EXPECT_EQ(store.logs("job-2").lines, (std::vector<std::string>{"dd"}));
  EXPECT_EQ(store.append_logs("job-1", {"e"}), 3);
}

TEST(JobStoreTest, RemoveDeletesTheRecordAndItsOutputOnly) {
  JobStore store(":memory:");
  store.put(record_submitted_at("job-a", 1));
  store.put(record_submitted_at("job-b", 2));
  store.append_logs("job-a", {"a0", "a1"});
  store.append_logs("job-b", {"b0"});
  store.remove("job-a");
  store.remove("job-never-was");
  EXPECT_EQ(store.append_logs("job-a", {"late"}), std::nullopt);
  EXPECT_EQ(store.get("job-a"), std::nullopt);
  EXPECT_EQ(ids(store.list()), (std::vector<std::string>{"job-b"}));
  EXPECT_TRUE(store.logs("job-a").lines.empty());
  EXPECT_EQ(store.log_line_count("job-a"), 0);
  EXPECT_EQ(store.logs("job-b").lines, (std::vector<std::string>{"b0"}));
}

// The state column is text, as before states were typed: databases of older
// heads load, and a name this version does not know reads as unspecified.
TEST(JobStoreTest, TheStateColumnHoldsTheStateName) {
  TempDir dir;
  const std::string path = dir.file("jobs.db");
  {
    JobStore store(path);
    store.put(full_record());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* select = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT CAST(state AS TEXT) FROM jobs WHERE id = ?", -1, &select,
                               nullptr),
            SQLITE_OK);
  const std::string id = full_record().id;
  sqlite3_bind_blob(select, 1, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(select), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(select, 0)), "FAILED");
  sqlite3_finalize(select);
  ASSERT_EQ(
      sqlite3_exec(db, "UPDATE jobs SET state = CAST('PAUSED' AS BLOB)", nullptr, nullptr, nullptr),
      SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  JobStore store(path);
  EXPECT_EQ(store.get(id)->state, rpc::JobInfo::STATE_UNSPECIFIED);
}

// A database written by a head of schema version 1 (no per-job output state)
// opens with its jobs and output, and its line numbering goes on.
TEST(JobStoreTest, UpgradesADatabaseOfSchemaVersion1) {
  TempDir dir;
  const std::string path = dir.file("jobs.db");
  {
    JobStore store(path);
    store.put(full_record());
    store.append_logs(full_record().id, {"zero", "one"});
  }
  {
    // Version 2 is version 1 and the job_log_state table.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    // Version 1 took output for any job id.
    ASSERT_EQ(sqlite3_exec(db,
                           "DROP TABLE job_log_state; PRAGMA user_version = 1;"
                           "INSERT INTO job_logs VALUES (CAST('job-gone' AS BLOB), 0, x'00');",
                           nullptr, nullptr, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  JobStore store(path, /*max_log_bytes=*/8);
  const std::string id = full_record().id;
  EXPECT_EQ(store.get(id), full_record());
  EXPECT_EQ(store.logs(id).lines, (std::vector<std::string>{"zero", "one"}));
  EXPECT_EQ(store.log_line_count(id), 2);
  EXPECT_EQ(store.append_logs(id, {"two"}), 2);
  EXPECT_EQ(store.logs(id).lines, (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(store.logs(id).first_line, 1);
  EXPECT_TRUE(store.logs("job-gone").lines.empty()) << "output of no job is dropped";
}

TEST(JobStoreTest, ADatabaseOfANewerSageIsRefused) {
  TempDir dir;
  const std::string path = dir.file("jobs.db");
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  try {
    JobStore store(path);
    FAIL() << "expected sage::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("upgrade sage on the head node"), std::string::npos)
        << e.what();
  }
}

// Expects opening `path` to be refused as damaged, with the way out.
void expect_refused_as_damaged(const std::string& path) {
  try {
    JobStore store(path);
    FAIL() << "a damaged database was opened";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("job database " + path + " is damaged"), std::string::npos) << message;
    EXPECT_NE(message.find("mv " + path + " " + path + ".damaged"), std::string::npos) << message;
    EXPECT_NE(message.find("job history in the damaged one is lost"), std::string::npos) << message;
  }
}

// One damaged page (here the root of the jobs table) is found when the
// store opens, not by the requests that would read it later.
TEST(JobStoreTest, ADatabaseWithADamagedPageIsRefusedAtOpening) {
  TempDir dir;
  const std::string path = dir.file("jobs.db");
  {
    JobStore store(path);
    for (int i = 0; i < 200; ++i) {
      JobRecord record = full_record();
      record.id = "job-" + std::to_string(i);
      record.error = std::string(500, 'e');
      store.put(record);
    }
  }
  std::int64_t page_size = 0, root_page = 0;
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* query = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "SELECT (SELECT page_size FROM pragma_page_size), rootpage "
                                 "FROM sqlite_schema WHERE name = 'jobs'",
                                 -1, &query, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    ASSERT_EQ(sqlite3_step(query), SQLITE_ROW);
    page_size = sqlite3_column_int64(query, 0);
    root_page = sqlite3_column_int64(query, 1);
    sqlite3_finalize(query);
    sqlite3_close(db);
  }
  ASSERT_GT(root_page, 1);
  ASSERT_FALSE(std::filesystem::exists(path + "-wal") &&
               std::filesystem::file_size(path + "-wal") > 0)
      << "the store's last close should have written its log into the file";
  {
    std::FILE* file = std::fopen(path.c_str(), "r+b");
    ASSERT_NE(file, nullptr);
    ASSERT_EQ(std::fseek(file, static_cast<long>((root_page - 1) * page_size), SEEK_SET), 0);
    const std::string garbage(static_cast<std::size_t>(page_size), '\xa5');
    ASSERT_EQ(std::fwrite(garbage.data(), 1, garbage.size(), file), garbage.size());
    std::fclose(file);
  }
  expect_refused_as_damaged(path);
}

TEST(JobStoreTest, AFileThatIsNoDatabaseIsRefusedAsDamaged) {
  TempDir dir;
  const std::string path = dir.file("jobs.db");
  {
    std::FILE* file = std::fopen(path.c_str(), "wb");
    ASSERT_NE(file, nullptr);
    const std::string text(8192, 'x');
    std::fwrite(text.data(), 1, text.size(), file);
    std::fclose(file);
  }
  expect_refused_as_damaged(path);
}

}  // namespace
}  // namespace sage::cluster
