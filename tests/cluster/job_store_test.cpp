#include "cluster/job_store.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

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
  record.state = "FAILED";
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
  record.state = "PENDING";
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
  record.state = "RUNNING";
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
  EXPECT_EQ(store.logs(record.id), (std::vector<std::string>{"first", "second\0line"s}));
  EXPECT_EQ(store.append_logs(record.id, {"third"}), 2);
}

TEST(JobStoreTest, AppendReturnsConsecutiveLineNumbersAndLogsPage) {
  JobStore store(":memory:");
  EXPECT_EQ(store.log_line_count("job-1"), 0);
  EXPECT_EQ(store.append_logs("job-1", {"l0", "l1", "l2"}), 0);
  EXPECT_EQ(store.append_logs("job-2", {"other"}), 0);
  EXPECT_EQ(store.append_logs("job-1", {}), 3);
  EXPECT_EQ(store.append_logs("job-1", {"l3", "l4"}), 3);
  EXPECT_EQ(store.log_line_count("job-1"), 5);
  EXPECT_EQ(store.log_line_count("job-2"), 1);

  EXPECT_EQ(store.logs("job-1"), (std::vector<std::string>{"l0", "l1", "l2", "l3", "l4"}));
  EXPECT_EQ(store.logs("job-1", 0, 2), (std::vector<std::string>{"l0", "l1"}));
  EXPECT_EQ(store.logs("job-1", 2, 2), (std::vector<std::string>{"l2", "l3"}));
  EXPECT_EQ(store.logs("job-1", 4, 2), (std::vector<std::string>{"l4"}));
  EXPECT_TRUE(store.logs("job-1", 5, 2).empty());
  EXPECT_TRUE(store.logs("job-1", 0, 0).empty());
  EXPECT_TRUE(store.logs("job-missing").empty());
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

  const std::vector<std::string> lines = store.logs("job-1");
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

}  // namespace
}  // namespace sage::cluster
