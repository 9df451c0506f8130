// `sage slurm submit` on a real Slurm: Debian's munged, slurmctld and two
// slurmd nodes (n1, n2) on this machine, started as root in a temporary
// directory with free ports, and stopped at the end with every job they ran.
// Skipped, saying why, where the machine cannot run them (not root, or the
// packages scripts/install-deps.sh installs are missing).
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <vector>

#include "integration/cluster_fixture.hpp"
#include "support/temp_dir.hpp"

namespace sage::testing {
namespace {

namespace fs = std::filesystem;

// A TCP port nothing listens on now, outside the kernel's ephemeral range.
// The port is bound seconds later (after sbatch schedules the job), and under
// `ctest -j2` a port the kernel handed out for 0 may by then be another test's
// connection's source port: one outside that range can only be taken by
// someone asking for it by number.
int free_port() {
  int low = 32768, high = 60999;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> low >> high;
  std::vector<int> candidates;
  for (int port = 20000; port <= 65535; ++port) {
    if (port < low || port > high) candidates.push_back(port);
  }
  std::mt19937 random(std::random_device{}());
  for (int attempt = 0; attempt < 1000 && !candidates.empty(); ++attempt) {
    const int port = candidates[random() % candidates.size()];
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    ::close(fd);
    if (bound) return port;
  }
  ADD_FAILURE() << "no free TCP port outside the ephemeral range " << low << "-" << high;
  return 0;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The pids of processes whose environment has SLURM_JOB_ID=`job` (what
// Slurm started for the job, and everything those started) and, if given,
// `also` (e.g. a task process's assignment).
std::vector<int> processes_of_job(const std::string& job, const std::string& also = "") {
  std::vector<int> pids;
  const std::string variable = "SLURM_JOB_ID=" + job;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string environment = read_file(entry.path().string() + "/environ");
    bool of_job = false, has_also = also.empty();
    std::size_t at = 0;
    for (std::size_t end; (end = environment.find('\0', at)) != std::string::npos; at = end + 1) {
      const std::string_view entry_text(environment.data() + at, end - at);
      of_job = of_job || entry_text == variable;
      has_also = has_also || entry_text.starts_with(also);
    }
    if (of_job && has_also && process_alive(std::stoi(name))) pids.push_back(std::stoi(name));
  }
  return pids;
}

// The Slurm job id in what `sage slurm submit` printed.
std::string job_of(const std::string& output) {
  std::smatch id;
  return std::regex_search(output, id, std::regex(R"(submitted Slurm batch job (\d+))"))
             ? id[1].str()
             : "";
}

class SlurmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root, to run munged, slurmctld and slurmd";
    for (const char* program : {"/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd",
                                "/usr/bin/sbatch", "/usr/bin/scancel"}) {
      if (!fs::exists(program)) {
        GTEST_SKIP() << program
                     << " is missing: Debian's munge, slurmctld, slurmd and slurm-client "
                        "(scripts/install-deps.sh) run this test";
      }
    }
    fs::create_directories(dir_.file("munge"));
    fs::create_directories(dir_.file("tmp"));
    fs::permissions(dir_.file("munge"), fs::perms::owner_all);
    {
      std::ofstream key(dir_.file("munge/key"), std::ios::binary);
      std::random_device random;
      for (int i = 0; i < 1024; ++i) key.put(static_cast<char>(random()));
    }
    fs::permissions(dir_.file("munge/key"), fs::perms::owner_read);
    ASSERT_EQ(
        shell("/usr/sbin/munged --force --socket=" + dir_.file("munge/socket") +
              " --key-file=" + dir_.file("munge/key") + " --pid-file=" + dir_.file("munged.pid") +
              " --log-file=" + dir_.file("munge/log") + " --seed-file=" + dir_.file("munge/seed"))
            .code,
        0)
        << read_file(dir_.file("munge/log"));
    write_slurm_conf();
    for (const std::string daemon :
         {"/usr/sbin/slurmctld", "/usr/sbin/slurmd -N n1", "/usr/sbin/slurmd -N n2"}) {
      const Outcome started = slurm(daemon + " -f " + conf_);
      ASSERT_EQ(started.code, 0) << daemon << ": " << started.output;
    }
    std::string nodes;
    ASSERT_TRUE(eventually(
        [&] {
          nodes = slurm("sinfo --noheader --format='%T %D'").output;
          return nodes.find("idle 2") != std::string::npos;
        },
        60s))
        << "the two slurmd nodes did not become idle: " << nodes
        << read_file(dir_.file("slurmctld.log"));
  }

  void TearDown() override {
    if (conf_.empty()) return;
    slurm("scancel --partition=debug");
    // Jobs first: a step outlives its slurmd.
    EXPECT_TRUE(eventually([&] { return slurm("squeue --noheader").output.empty(); }, 60s))
        << slurm("squeue").output;
    for (const char* pid_file : {"slurmd-n1.pid", "slurmd-n2.pid", "slurmctld.pid", "munged.pid"}) {
      std::ifstream file(dir_.file(pid_file));
      int pid = 0;
      if (!(file >> pid)) continue;
      kill(pid, SIGTERM);
      if (!eventually([&] { return !process_alive(pid); }, 10s)) kill(pid, SIGKILL);
    }
  }

  // A Slurm command against this test's cluster.
  Outcome slurm(const std::string& command) { return shell("SLURM_CONF=" + conf_ + " " + command); }

  // `sage slurm submit` with `options` (sbatch's), its output in output_file().
  Outcome submit(const std::vector<std::string>& options, const std::vector<std::string>& program) {
    std::vector<std::string> argv{SAGE_CLI_BINARY,
                                  "slurm",
                                  "submit",
                                  "--port",
                                  std::to_string(free_port()),
                                  "--jobmanager-port",
                                  std::to_string(free_port()),
                                  "--dashboard-port",
                                  std::to_string(free_port()),
                                  "--output=" + output_file()};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back("--");
    argv.insert(argv.end(), program.begin(), program.end());
    ChildProcess process(argv, {"SLURM_CONF=" + conf_, "TMPDIR=" + dir_.file("tmp")});
    Outcome outcome;
    if (!process.wait(180s)) ADD_FAILURE() << "sage slurm submit did not end in 180 s";
    outcome.code = process.exit_code();
    outcome.output = process.output();
    return outcome;
  }

  std::string output_file() const { return dir_.file("job.out"); }

  TempDir dir_;
  std::string conf_;

 private:
  void write_slurm_conf() {
    conf_ = dir_.file("slurm.conf");
    std::ofstream conf(conf_);
    conf << "ClusterName=sagetest\n"
         << "SlurmctldHost=localhost\n"
         << "SlurmctldPort=" << free_port() << "\n"
         << "SlurmUser=root\nSlurmdUser=root\n"
         << "AuthType=auth/munge\nCredType=cred/munge\n"
         << "AuthInfo=socket=" << dir_.file("munge/socket") << "\n"
         << "StateSaveLocation=" << dir_.file("state") << "\n"
         << "SlurmdSpoolDir=" << dir_.file("spool-%n") << "\n"
         << "SlurmctldPidFile=" << dir_.file("slurmctld.pid") << "\n"
         << "SlurmdPidFile=" << dir_.file("slurmd-%n.pid") << "\n"
         << "SlurmctldLogFile=" << dir_.file("slurmctld.log") << "\n"
         << "SlurmdLogFile=" << dir_.file("slurmd-%n.log") << "\n"
         << "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
         << "SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n"
         << "ReturnToService=2\nMpiDefault=none\nKillWait=10\n"
         << "JobCompType=jobcomp/none\nAccountingStorageType=accounting_storage/none\n"
         << "JobAcctGatherType=jobacct_gather/none\n";
    for (const char* node : {"n1", "n2"}) {
      conf << "NodeName=" << node
           << " NodeHostname=localhost NodeAddr=127.0.0.1 Port=" << free_port()
           << " CPUs=2 State=UNKNOWN\n";
    }
    conf << "PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP\n";
  }
};

TEST_F(SlurmTest, TheReferenceExampleRunsAcrossBothNodesOfAnAllocation) {
  const Outcome submitted = submit({"--nodes=2", "--wait"}, {SAGE_EXAMPLE_BINARY});
  const std::string output = read_file(output_file());
  ASSERT_EQ(submitted.code, 0) << submitted.output << output;
  EXPECT_NE(output.find("Records reaching the sinks: 10 (expected 10)"), std::string::npos)
      << output;
  for (const char* node : {"n1", "n2"}) {
    EXPECT_TRUE(std::regex_search(output, std::regex(std::string(R"(\]\s+)") + node + R"(\s+\d+)")))
        << "no instance ran on " << node << ":\n"
        << output;
  }
  EXPECT_FALSE(fs::exists(dir_.file("tmp/sage-slurm-" + job_of(submitted.output))))
      << "a step left its state directory";
}

TEST_F(SlurmTest, AJobAskingForMoreThanTheAllocationFailsSayingWhy) {
  const Outcome submitted = submit({"--nodes=2", "--wait"}, {SAGE_CLUSTER_JOB_BINARY, "greedy"});
  const std::string output = read_file(output_file());
  EXPECT_NE(submitted.code, 0) << output;
  EXPECT_NE(output.find("but no node has that"), std::string::npos) << output;
  EXPECT_NE(submitted.output.find("the batch job failed"), std::string::npos) << submitted.output;
}

TEST_F(SlurmTest, ScancelInTheMiddleOfAJobLeavesNoProcessOnEitherNode) {
  const Outcome submitted =
      submit({"--nodes=2"}, {SAGE_CLUSTER_JOB_BINARY, "gated", "1000000", dir_.file("never")});
  ASSERT_EQ(submitted.code, 0) << submitted.output;
  ASSERT_FALSE(job_of(submitted.output).empty()) << submitted.output;
  const std::string job = job_of(submitted.output);
  // Its task processes run (one on each node: the job has more instances
  // than one node has CPUs).
  ASSERT_TRUE(
      eventually([&] { return processes_of_job(job, "SAGE_TASK_ASSIGNMENT=").size() == 2; }, 90s))
      << "the job's two task processes did not start:\n"
      << read_file(output_file());
  ASSERT_FALSE(processes_of_job(job).empty());
  ASSERT_EQ(slurm("scancel " + job).code, 0);
  std::vector<int> left;
  EXPECT_TRUE(eventually(
      [&] {
        left = processes_of_job(job);
        return left.empty();
      },
      60s))
      << left.size() << " processes of job " << job << " are left, e.g. pid " << left.front();
  EXPECT_FALSE(fs::exists(dir_.file("tmp/sage-slurm-" + job))) << "a step left its state directory";
}

}  // namespace
}  // namespace sage::testing
