// The same dataflow split over three real processes, connected by the data
// plane, gives exactly the result of a single process; a process that builds
// another plan is refused; a process that dies fails its peers instead of
// leaving them waiting.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "cluster/task_process.hpp"
#include "graph/physical_plan.hpp"
#include "integration/sample_job.hpp"
#include "net/socket.hpp"
#include "support/child_process.hpp"

namespace sage::cluster {
namespace {

using std::chrono::seconds;
using testing::ChildProcess;

constexpr int kDataFd = 100;

struct Launched {
  std::vector<std::unique_ptr<ChildProcess>> processes;
};

// Starts `count` task processes of the sample job, tasks spread round robin.
Launched launch(int count, long long records, const std::string& fingerprint_override = "") {
  testing::BuildOnlyEnvironment env;
  testing::build_sample_job(env, records);
  const auto plan = graph::PhysicalPlan::build(*env.graph(), env.config());

  TaskAssignment assignment;
  assignment.job_id = "job-test";
  assignment.token = "token-123";
  assignment.fingerprint = fingerprint_override.empty() ? plan.fingerprint() : fingerprint_override;
  assignment.node_id = "127.0.0.1";
  int task = 0;
  for (const auto& chain : plan.chains()) {
    for (int i = 0; i < chain.parallelism; ++i)
      assignment.process_of_task.push_back(task++ % count);
  }
  std::vector<net::Socket> listeners;
  for (int p = 0; p < count; ++p) {
    listeners.push_back(net::Socket::listen({"127.0.0.1", 0}));
    assignment.data_addresses.push_back("127.0.0.1:" +
                                        std::to_string(listeners.back().local_port()));
  }
  Launched launched;
  for (int p = 0; p < count; ++p) {
    assignment.process_index = p;
    launched.processes.push_back(std::make_unique<ChildProcess>(
        std::vector<std::string>{SAGE_TASK_PROCESS_BINARY, std::to_string(records)},
        std::vector<std::string>{"SAGE_TASK_ASSIGNMENT=" + assignment.encode(),
                                 "SAGE_DATA_FD=" + std::to_string(kDataFd)},
        std::vector<std::pair<int, int>>{{listeners[p].fd(), kDataFd}}));
  }
  // The listeners now live in the children only: one that dies closes its port.
  return launched;
}

std::vector<ChildProcess*> pointers(const Launched& launched) {
  std::vector<ChildProcess*> all;
  for (const auto& p : launched.processes) all.push_back(p.get());
  return all;
}

std::vector<std::string> lines_starting_with(const std::string& text, const std::string& prefix) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) lines.push_back(line);
  }
  return lines;
}

TEST(TaskProcessTest, ThreeProcessesGiveExactlyTheSingleProcessResult) {
  constexpr long long kRecords = 200'000;
  Launched job = launch(3, kRecords);
  std::vector<std::string> records;
  std::set<std::string> pids;
  ASSERT_TRUE(testing::wait_all(pointers(job), std::chrono::milliseconds(120'000)))
      << "a task process hung";
  for (auto& p : job.processes) {
    ASSERT_EQ(p->exit_code(), 0) << p->output();
    auto mine = lines_starting_with(p->output(), "record ");
    records.insert(records.end(), mine.begin(), mine.end());
    const auto instances = lines_starting_with(p->output(), "instance ");
    EXPECT_FALSE(instances.empty()) << "a process ran no instance";
    for (const auto& line : instances) {
      std::istringstream fields(line);
      std::string word, name, index, pid;
      fields >> word >> name >> index >> pid;
      pids.insert(pid);
    }
  }
  EXPECT_EQ(pids.size(), 3u) << "instances did not run in three processes";
  std::vector<std::string> expected;
  for (long long key = 0; key < 100; ++key) {
    for (long long count = 1; count <= kRecords / 100; ++count) {
      expected.push_back("record " + std::to_string(key) + " " + std::to_string(count));
    }
  }
  std::sort(expected.begin(), expected.end());
  std::sort(records.begin(), records.end());
  ASSERT_EQ(records.size(), expected.size());
  EXPECT_TRUE(records == expected);
}

TEST(TaskProcessTest, DifferentPlanFingerprintIsRefused) {
  Launched job = launch(1, 100, "0123456789abcdef");
  auto& p = *job.processes.front();
  ASSERT_TRUE(p.wait(std::chrono::milliseconds(60'000)));
  EXPECT_EQ(p.exit_code(), 1);
  EXPECT_NE(p.output().find("built a different dataflow"), std::string::npos) << p.output();
}

TEST(TaskProcessTest, DeadProcessFailsItsPeersInsteadOfHanging) {
  Launched job = launch(3, 1'000'000'000'000LL);  // runs until something stops it
  for (auto& p : job.processes) {
    ASSERT_TRUE(p->wait_for_output("running", std::chrono::milliseconds(60'000))) << p->output();
  }
  job.processes[1]->kill_now();
  ASSERT_TRUE(testing::wait_all(pointers(job), std::chrono::milliseconds(20'000)))
      << "a process kept running after its peer died";
  for (int i : {0, 2}) {
    auto& p = *job.processes[i];
    EXPECT_EQ(p.exit_code(), 1) << p.output();
    EXPECT_TRUE(p.output().find("failed: ") != std::string::npos ||
                p.output().find("error: ") != std::string::npos)
        << p.output();
  }
}

}  // namespace
}  // namespace sage::cluster
