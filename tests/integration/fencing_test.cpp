// A worker and its head losing each other: the worker joins a restarted head
// soon after it answers again, and task processes do not work on for a job
// the head failed when their worker froze or lost the head (fencing). The
// head runs no work here (--num-cpus 0), so every task process is the worker's.
#include "cluster/cluster_config.hpp"
#include "integration/cluster_fixture.hpp"

namespace sage::testing {
namespace {

using cluster::kNodeTimeout;
// Allowed beyond kNodeTimeout, for a loaded machine.
constexpr auto kSlack = 2s;

// Freezes a process (pid > 0) and thaws it at the end of the scope, also when
// the test fails, so that `cluster stop` can stop it.
struct Frozen {
  explicit Frozen(int pid) : pid(pid) { EXPECT_EQ(kill(pid, SIGSTOP), 0); }
  ~Frozen() { kill(pid, SIGCONT); }
  Frozen(const Frozen&) = delete;
  Frozen& operator=(const Frozen&) = delete;
  const int pid;
};

class FencingTest : public ClusterTest {
 protected:
  // A head that runs no work, on the given ports ("0": any).
  void start_head_only(const std::string& port = "0", const std::string& jobmanager_port = "0") {
    const Outcome head = cli({"cluster", "start", "--head", "--port", port, "--jobmanager-port",
                              jobmanager_port, "--dashboard-port", "0", "--num-cpus", "0"});
    ASSERT_EQ(head.code, 0) << head.output;
  }

  bool node_alive(const std::string& node_id) {
    const Outcome status = cli({"cluster", "status", "--format", "json"});
    if (status.code != 0) return false;
    const auto nodes = nlohmann::json::parse(status.output);
    for (const auto& node : nodes.at("nodes")) {
      if (node.at("node_id") == node_id) return node.at("alive").get<bool>();
    }
    return false;
  }

  // Submits the endless job and returns the pid of its task process on w1.
  int start_endless_job(std::string* job_id) {
    *job_id = submit_endless("unbounded");
    std::set<int> pids;
    EXPECT_TRUE(eventually(
        [&] {
          pids = task_pids(cli({"job", "logs", *job_id}).output);
          return !pids.empty();
        },
        30s))
        << "the job's task process did not start";
    return pids.empty() ? -1 : *pids.begin();
  }

  // `pid` ends within `timeout` of `since`; prints how long it took.
  void expect_ended(int pid, std::chrono::steady_clock::time_point since,
                    std::chrono::milliseconds timeout, const std::string& what) {
    const bool ended = eventually([&] { return !process_alive(pid); }, timeout + kSlack);
    const auto after = std::chrono::steady_clock::now() - since;
    EXPECT_TRUE(ended && after <= timeout + kSlack)
        << "the task process " << pid << " still ran "
        << std::chrono::duration<double>(after).count() << " s after " << what;
    if (ended) {
      std::printf("task process ended %.2f s after %s\n",
                  std::chrono::duration<double>(after).count(), what.c_str());
    }
  }
};

TEST_F(FencingTest, AWorkerJoinsARestartedHeadWithinTwoSecondsOfItsAnswering) {
  ASSERT_NO_FATAL_FAILURE(start_head_only());
  ASSERT_NO_FATAL_FAILURE(start_worker("w1"));
  ASSERT_TRUE(eventually([&] { return node_alive("w1"); }, 10s)) << "w1 did not join";
  // The restarted head must come back where the worker looks for it.
  const auto port_of = [&](const std::string& field) {
    const std::string address = head_field(field);
    return address.substr(address.rfind(':') + 1);
  };
  const std::string port = port_of("cluster"), jobmanager_port = port_of("jobmanager");

  const int head = pid_of("head");
  ASSERT_EQ(kill(head, SIGTERM), 0);
  ASSERT_TRUE(eventually([&] { return !process_alive(head); }, 20s)) << "the head did not stop";
  // The outage: long enough for gRPC's reconnect backoff to grow past 4 s.
  std::this_thread::sleep_for(7s);
  ASSERT_NO_FATAL_FAILURE(start_head_only(port, jobmanager_port));
  const auto answering = std::chrono::steady_clock::now();
  ASSERT_EQ(cli({"cluster", "status"}).code, 0) << "the restarted head does not answer";

  const bool rejoined = eventually([&] { return node_alive("w1"); }, 20s);
  const auto after = std::chrono::steady_clock::now() - answering;
  ASSERT_TRUE(rejoined) << "w1 did not join the restarted head within 20 s";
  std::printf("w1 joined the restarted head %.2f s after it answered\n",
              std::chrono::duration<double>(after).count());
  EXPECT_LE(after, 2s) << "w1 joined the restarted head late";
}

// The worker agent freezes (SIGSTOP): it can neither kill its task processes
// nor hear from the head, which fails the job; the task process ends itself.
TEST_F(FencingTest, TheTaskProcessOfAFrozenWorkerEndsItselfWhenTheHeadCountsTheNodeDead) {
  ASSERT_NO_FATAL_FAILURE(start_head_only());
  ASSERT_NO_FATAL_FAILURE(start_worker("w1"));
  std::string job_id;
  const int task = start_endless_job(&job_id);
  ASSERT_GT(task, 0);

  const int worker_pid = pid_of("worker-w1");
  ASSERT_GT(worker_pid, 0);
  {
    const Frozen worker(worker_pid);
    const auto frozen_at = std::chrono::steady_clock::now();
    EXPECT_TRUE(eventually([&] { return job_state(job_id) == "FAILED"; }, kNodeTimeout + kSlack))
        << "the job is " << job_state(job_id) << " although its worker froze";
    const auto job = job_json(job_id);
    EXPECT_NE(job.value("error", "").find("node 'w1' stopped answering"), std::string::npos)
        << job.dump();
    expect_ended(task, frozen_at, kNodeTimeout, "its worker froze");
  }
  // Thawed, the worker finds it lost the head, and joins again.
  EXPECT_TRUE(eventually([&] { return node_alive("w1"); }, 10s)) << "w1 did not join again";
}

// The head freezes: the worker's heartbeats go unanswered, and once the head
// would count the node as dead the worker's task processes end.
TEST_F(FencingTest, AWorkerThatCannotReachTheHeadEndsItsTaskProcesses) {
  ASSERT_NO_FATAL_FAILURE(start_head_only());
  ASSERT_NO_FATAL_FAILURE(start_worker("w1"));
  std::string job_id;
  const int task = start_endless_job(&job_id);
  ASSERT_GT(task, 0);

  const int head_pid = pid_of("head");
  ASSERT_GT(head_pid, 0);
  {
    const Frozen head(head_pid);
    expect_ended(task, std::chrono::steady_clock::now(), kNodeTimeout, "the head froze");
  }
  // Thawed, the head fails the job, and the worker joins again.
  EXPECT_TRUE(eventually([&] { return job_state(job_id) == "FAILED"; }, 10s))
      << "the job is " << job_state(job_id);
  // Which the thawed head hears of first: the node's silence, its ended
  // session, or its report that the task process was stopped.
  const std::string error = job_json(job_id).value("error", "");
  EXPECT_NE(error.find("'w1'"), std::string::npos) << error;
  EXPECT_TRUE(eventually([&] { return node_alive("w1"); }, 10s)) << "w1 did not join again";
}

}  // namespace
}  // namespace sage::testing
