// Fault tolerance on a real cluster (issue 11): a head with no CPUs of its
// own and two workers run exactly_once_job (a paced replayable source,
// key_by, keyed state, write_text; checkpoints every 200 ms). Whatever dies
// mid-run (a task process, a worker with its task process, a process at a
// crash point of the checkpoint protocol), the job restarts once from its
// last checkpoint and the committed lines equal those of a run without
// failures in a LocalEnvironment.
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>

#include "integration/cluster_fixture.hpp"
#include "support/committed_lines.hpp"
#include "support/temp_dir.hpp"

namespace sage::testing {
namespace {

constexpr long long kRecords = 80'000;  // about 4 s with the job's pacing

class FaultToleranceTest : public ClusterTest {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    head_cpus_ = "0";
  }

  // The lines a failure-free run commits, sorted: "key count number" for
  // every number, counted per key in the order of the numbers (each key's
  // numbers come from one source instance, in order). The test without
  // failures checks this against a LocalEnvironment run of the job.
  static const std::vector<std::string>& reference() {
    static const std::vector<std::string> lines = [] {
      std::vector<std::string> expected;
      std::map<long long, long long> counts;
      for (long long x = 0; x < kRecords; ++x) {
        const long long key = (x / 2) % 97 * 2 + x % 2;
        expected.push_back(std::to_string(key) + " " + std::to_string(++counts[key]) + " " +
                           std::to_string(x));
      }
      std::sort(expected.begin(), expected.end());
      return expected;
    }();
    return lines;
  }

  // Starts `sage job submit` of the job into `out`, in the background, with
  // the job's optional argument (crash=..., checkpoints=...).
  std::unique_ptr<ChildProcess> submit(const TempDir& out, const std::string& option = "") {
    std::vector<std::string> argv{SAGE_CLI_BINARY, "job",
                                  "submit",        SAGE_EXACTLY_ONCE_JOB_BINARY,
                                  out.path(),      std::to_string(kRecords)};
    if (!option.empty()) argv.push_back(option);
    return std::make_unique<ChildProcess>(argv, env());
  }

  static std::string job_id_of(const std::string& output) {
    std::smatch id;
    return std::regex_search(output, id, std::regex(R"((job-[0-9a-f]+))")) ? id[1].str() : "";
  }

  // Whether the job's checkpoint directory `root` holds a complete checkpoint.
  static bool has_complete_checkpoint(const std::string& root) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
      if (std::filesystem::exists(entry.path() / "_metadata")) return true;
    }
    return false;
  }

  std::uint64_t last_checkpoint(const std::string& job_id) {
    const auto job = job_json(job_id);
    if (!job.contains("checkpoints")) return 0;
    const auto& id = job["checkpoints"].value("last_id", nlohmann::json("0"));
    return id.is_string() ? std::stoull(id.get<std::string>()) : id.get<std::uint64_t>();
  }

  // The submitted job's id and the pid of its task process on w1, once it
  // runs there and the job has completed a checkpoint or two.
  void wait_for_task_on_w1(ChildProcess& job, std::string* job_id, int* pid) {
    ASSERT_TRUE(job.wait_for_output("submitted job-", 30s)) << job.output();
    *job_id = job_id_of(job.output());
    std::smatch found;
    std::string logs;
    ASSERT_TRUE(eventually(
        [&] {
          logs = cli({"job", "logs", *job_id}).output;
          return std::regex_search(logs, found, std::regex(R"(instance \S+ on w1 pid (\d+))")) &&
                 last_checkpoint(*job_id) >= 2;
        },
        30s))
        << "no task process on w1 with two checkpoints done:\n"
        << logs;
    *pid = std::stoi(found[1]);
  }
};

TEST_F(FaultToleranceTest, WithoutFailuresTheClusterCommitsWhatALocalRunDoes) {
  TempDir local;
  const Outcome run_locally =
      run({SAGE_EXACTLY_ONCE_JOB_BINARY, local.path(), std::to_string(kRecords), "--local"});
  ASSERT_EQ(run_locally.code, 0) << run_locally.output;
  int hidden = 0;
  EXPECT_TRUE(committed_lines(local.path(), &hidden) == reference())
      << "a LocalEnvironment run committed other lines";
  EXPECT_EQ(hidden, 0);
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  TempDir out;
  auto job = submit(out);
  ASSERT_TRUE(job->wait_for_output("submitted job-", 30s)) << job->output();
  // The task processes stream their snapshots to the head's state directory.
  const std::string checkpoints = state_dir_ + "/checkpoints/" + job_id_of(job->output());
  EXPECT_TRUE(eventually([&] { return has_complete_checkpoint(checkpoints); }, 30s))
      << "no complete checkpoint in " << checkpoints;
  ASSERT_NO_FATAL_FAILURE(expect_committed_exactly_once(*job, out.path(), reference(), 0));
  EXPECT_TRUE(std::regex_search(job->output(), std::regex(R"(0 restarts, [1-9]\d* checkpoints)")))
      << job->output();
  // Its output committed, a finished job's checkpoints are of no more use.
  EXPECT_FALSE(std::filesystem::exists(checkpoints)) << checkpoints;
}

TEST_F(FaultToleranceTest, AKilledTaskProcessRestartsTheJobFromItsLastCheckpoint) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  TempDir out;
  auto job = submit(out);
  std::string job_id;
  int task = 0;
  ASSERT_NO_FATAL_FAILURE(wait_for_task_on_w1(*job, &job_id, &task));
  ASSERT_EQ(kill(task, SIGKILL), 0);
  ASSERT_NO_FATAL_FAILURE(expect_committed_exactly_once(*job, out.path(), reference(), 1));
  const auto status = cli({"job", "status", job_id}).output;
  EXPECT_NE(status.find("restarts:  1"), std::string::npos) << status;
  EXPECT_NE(status.find("checkpoint: "), std::string::npos) << status;
}

TEST_F(FaultToleranceTest, AKilledWorkerAndItsTaskProcessRestartTheJobOnTheNodesLeft) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  TempDir out;
  auto job = submit(out);
  std::string job_id;
  int task = 0;
  ASSERT_NO_FATAL_FAILURE(wait_for_task_on_w1(*job, &job_id, &task));
  ASSERT_EQ(kill(pid_of("worker-w1"), SIGKILL), 0);
  ASSERT_EQ(kill(task, SIGKILL), 0);
  ASSERT_NO_FATAL_FAILURE(expect_committed_exactly_once(*job, out.path(), reference(), 1));
  const auto status = job_json(job_id);
  for (const auto& node : status.at("nodes")) EXPECT_EQ(node, "w2") << status.dump();
}

// A job that names a checkpoint directory (a mount every node shares) has
// its task processes write their snapshots there, and restores from there.
TEST_F(FaultToleranceTest, AJobThatNamesACheckpointDirectoryKeepsAndRestoresItsCheckpointsThere) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  TempDir out, shared;
  auto job = submit(out, "checkpoints=" + shared.path());
  std::string job_id;
  int task = 0;
  ASSERT_NO_FATAL_FAILURE(wait_for_task_on_w1(*job, &job_id, &task));
  EXPECT_TRUE(has_complete_checkpoint(shared.path() + "/" + job_id)) << shared.path();
  EXPECT_FALSE(std::filesystem::exists(state_dir_ + "/checkpoints/" + job_id));
  ASSERT_EQ(kill(task, SIGKILL), 0);
  ASSERT_NO_FATAL_FAILURE(expect_committed_exactly_once(*job, out.path(), reference(), 1));
  EXPECT_FALSE(std::filesystem::exists(shared.path() + "/" + job_id));
}

// A process dies at a point of the checkpoint protocol: in its save for a
// checkpoint (which then never completes), after its snapshot is stored but
// before it is acknowledged (the same, with a stored snapshot left), or in
// the middle of write_text's commit once a checkpoint completed (the restart
// commits the rest).
class CrashPointTest : public FaultToleranceTest,
                       public ::testing::WithParamInterface<std::tuple<std::string, int>> {};

TEST_P(CrashPointTest, TheJobRestartsOnceAndCommitsEveryLineOnce) {
  const auto [where, seed] = GetParam();
  std::mt19937 random(static_cast<unsigned>(seed));
  const int checkpoint = std::uniform_int_distribution<int>(2, 5)(random);
  const int instance =
      std::uniform_int_distribution<int>(0, std::string(where) == "in-commit" ? 1 : 2)(random);
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  TempDir out;
  auto job = submit(out, "crash=" + std::string(where) + ":" + std::to_string(checkpoint) + ":" +
                             std::to_string(instance));
  ASSERT_NO_FATAL_FAILURE(expect_committed_exactly_once(*job, out.path(), reference(), 1));
}

INSTANTIATE_TEST_SUITE_P(Seeds, CrashPointTest,
                         ::testing::Combine(::testing::Values(std::string("snapshot"),
                                                              std::string("after-store"),
                                                              std::string("in-commit")),
                                            ::testing::Values(1, 2)),
                         [](const auto& info) {
                           std::string where = std::get<0>(info.param);
                           std::replace(where.begin(), where.end(), '-', '_');
                           return where + "_seed" + std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace sage::testing
