// The asynchronous map on a real cluster: a head with no CPUs of its own and
// two workers run async_map_job (a paced replayable source, an asynchronous
// map with calls answered 5 ms later on a timer thread, write_text;
// checkpoints every 200 ms, each taken with calls in flight). Without
// failures every result is committed once; when fetch's task process dies
// right after storing a snapshot, the job restarts from its last completed
// checkpoint, issues the calls in flight at it again, and still commits
// every result exactly once.
#include <algorithm>
#include <regex>

#include "integration/cluster_fixture.hpp"
#include "support/committed_lines.hpp"
#include "support/temp_dir.hpp"

namespace sage::testing {
namespace {

constexpr long long kRecords = 40'000;  // about 2 s with the job's pacing

class AsyncMapClusterTest : public ClusterTest {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    head_cpus_ = "0";
  }

  static std::vector<std::string> reference() {
    std::vector<std::string> lines;
    for (long long x = 0; x < kRecords; ++x) {
      lines.push_back(std::to_string(x) + " " + std::to_string(3 * x + 1));
    }
    std::sort(lines.begin(), lines.end());
    return lines;
  }

  std::unique_ptr<ChildProcess> submit(const TempDir& out, const std::string& option = "") {
    std::vector<std::string> argv{SAGE_CLI_BINARY,           "job",      "submit",
                                  SAGE_ASYNC_MAP_JOB_BINARY, out.path(), std::to_string(kRecords)};
    if (!option.empty()) argv.push_back(option);
    return std::make_unique<ChildProcess>(argv, env());
  }

  // Waits for the job's end: finished after `restarts` restarts, every
  // result committed once. Returns the job's logs.
  std::string expect_exactly_once(ChildProcess& job, const TempDir& out, int restarts) {
    expect_committed_exactly_once(job, out.path(), reference(), restarts);
    std::smatch id;
    const std::string output = job.output();
    if (!std::regex_search(output, id, std::regex(R"((job-[0-9a-f]+))"))) return "";
    return cli({"job", "logs", id[1].str()}).output;
  }

  // The most calls in flight any of fetch's snapshots was taken with.
  static int most_in_flight(const std::string& logs) {
    static const std::regex line(R"(checkpoint \d+: (\d+) calls in flight)");
    int most = 0;
    for (std::sregex_iterator it(logs.begin(), logs.end(), line), end; it != end; ++it) {
      most = std::max(most, std::stoi((*it)[1]));
    }
    return most;
  }
};

TEST_F(AsyncMapClusterTest, AJobWithAnAsynchronousMapCommitsEveryResultOnce) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  TempDir out;
  auto job = submit(out);
  const std::string logs = expect_exactly_once(*job, out, 0);
  EXPECT_GE(most_in_flight(logs), 5) << "no checkpoint found calls in flight:\n" << logs;
}

TEST_F(AsyncMapClusterTest, ACrashWithCallsInFlightRestartsAndStillCommitsEveryResultOnce) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  TempDir out;
  auto job = submit(out, "crash=after-store:3:1");
  const std::string logs = expect_exactly_once(*job, out, 1);
  EXPECT_NE(job->output().find("restarted after"), std::string::npos) << job->output();
  EXPECT_GE(most_in_flight(logs), 5) << "no checkpoint found calls in flight:\n" << logs;
}

}  // namespace
}  // namespace sage::testing
