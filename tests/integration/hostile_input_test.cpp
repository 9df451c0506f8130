// Strangers on the data-plane ports of a running job (a port scanner, an
// attacker without the token) cannot hurt it: on a plaintext cluster, a flood
// of connections that send garbage and close, and connections that say
// nothing, leave the job to finish with exactly its records, and the task
// processes give back every file and thread the strangers cost them.
#include <random>

#include "integration/cluster_fixture.hpp"
#include "support/stranger.hpp"

namespace sage::testing {
namespace {

constexpr long long kRecords = 100'000;
constexpr int kFloodPerPort = 500;  // connect, send 0-64 random bytes, close
constexpr int kSilentPerPort = 50;  // connect and say nothing
constexpr std::size_t kMostRandomBytes = 64;

// The TCP ports process `pid` listens on (its sockets in state LISTEN).
std::set<int> listening_ports(int pid) {
  std::set<std::string> inodes;
  const std::string fds = "/proc/" + std::to_string(pid) + "/fd";
  for (const auto& entry : std::filesystem::directory_iterator(fds)) {
    std::error_code error;
    const std::string target = std::filesystem::read_symlink(entry.path(), error).string();
    static const std::regex socket(R"(socket:\[(\d+)\])");
    std::smatch inode;
    if (!error && std::regex_match(target, inode, socket)) inodes.insert(inode[1]);
  }
  std::set<int> ports;
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // the column names
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
    fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
        timeout >> inode;
    if (state == "0A" && inodes.count(inode)) {
      ports.insert(std::stoi(local.substr(local.find(':') + 1), nullptr, 16));
    }
  }
  return ports;
}

TEST_F(ClusterTest, StrangersOnTheDataPortsOfARunningJobCannotHurtIt) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  const std::string gate = state_dir_ + "/gate";
  ChildProcess job({SAGE_CLI_BINARY, "job", "submit", SAGE_CLUSTER_JOB_BINARY, "gated",
                    std::to_string(kRecords), gate},
                   env());

  // Every task process runs its tasks, so every peer has greeted the others.
  std::string job_id, logs;
  ASSERT_TRUE(eventually(
      [&] {
        const auto list = nlohmann::json::parse(cli({"job", "list", "--format", "json"}).output);
        if (!list.contains("jobs") || list.at("jobs").empty()) return false;
        job_id = list.at("jobs")[0].at("job_id").get<std::string>();
        logs = cli({"job", "logs", job_id}).output;
        return task_pids(logs).size() == 3;
      },
      60s))
      << "the job's instances did not start in 3 processes:\n"
      << logs;
  std::map<int, ProcessHoldings> before;
  std::map<int, std::set<int>> ports;
  for (int pid : task_pids(logs)) {
    before[pid] = holdings_of(std::to_string(pid));
    ports[pid] = listening_ports(pid);
    ASSERT_FALSE(ports[pid].empty()) << "task process " << pid << " has no data port";
  }

  std::mt19937 random(2026);
  std::vector<std::unique_ptr<Stranger>> silent;
  for (const auto& [pid, its_ports] : ports) {
    for (int port : its_ports) {
      for (int i = 0; i < kFloodPerPort; ++i) {
        Stranger stranger(port);
        stranger.send(random_bytes(random, kMostRandomBytes));
      }
      for (int i = 0; i < kSilentPerPort; ++i) silent.push_back(std::make_unique<Stranger>(port));
    }
  }
  // The silent ones are closed at the hello deadline (5 s), and everything
  // the strangers held is given back while the job still runs.
  for (const auto& stranger : silent) {
    ASSERT_TRUE(stranger->closed_by_receiver(30s)) << "a silent connection was kept open";
  }
  silent.clear();
  for (const auto& [pid, held_before] : before) {
    ProcessHoldings now;
    EXPECT_TRUE(eventually(
        [&] {
          now = holdings_of(std::to_string(pid));
          return now.at_most(held_before);
        },
        30s))
        << "task process " << pid << " held " << to_string(held_before) << " before the flood and "
        << to_string(now) << " after it";
  }

  // The job was not touched: it finishes with exactly its records.
  std::ofstream(gate).put('\n');
  ASSERT_TRUE(job.wait(120s)) << job.output();
  EXPECT_EQ(job.exit_code(), 0) << job.output();
  EXPECT_NE(job.output().find("FINISHED, " + std::to_string(kRecords) + " records at the sinks"),
            std::string::npos)
      << job.output();

  // The rejections went to the nodes' logs, not to the job's output.
  EXPECT_EQ(cli({"job", "logs", job_id}).output.find("rejected"), std::string::npos);
  std::string node_logs;
  for (const auto& entry : std::filesystem::directory_iterator(state_dir_ + "/logs")) {
    std::ifstream file(entry.path());
    node_logs += std::string(std::istreambuf_iterator<char>(file), {});
  }
  EXPECT_NE(node_logs.find("data plane of job " + job_id + ": rejected a connection from"),
            std::string::npos)
      << node_logs;
}

}  // namespace
}  // namespace sage::testing
