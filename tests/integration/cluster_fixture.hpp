// Test support for cluster tests: a real cluster on 127.0.0.1 started by the
// `sage` command in a temporary state directory (ClusterTest), a second host
// in a network namespace, and helpers that wait on conditions with deadlines.
// Every process a test starts is stopped at its end, also when it fails.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "support/child_process.hpp"
#include "support/eventually.hpp"

namespace sage::testing {

using namespace std::chrono_literals;

struct Outcome {
  int code = -1;
  std::string output;
};

// Alive and not a zombie (a daemon's zombie waits for init to reap it).
inline bool process_alive(int pid) {
  if (pid <= 0 || kill(pid, 0) != 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, command, state;
  return !(stat >> pid_field >> command >> state) || state != "Z";
}

// Task process pids named in job output lines "instance X on N pid P".
inline std::set<int> task_pids(const std::string& output) {
  std::set<int> pids;
  static const std::regex line(R"(instance \S+ on \S+ pid (\d+))");
  for (std::sregex_iterator it(output.begin(), output.end(), line), end; it != end; ++it) {
    pids.insert(std::stoi((*it)[1]));
  }
  return pids;
}

// Runs `command` through the shell; its output on failure.
inline Outcome shell(const std::string& command) {
  ChildProcess process({"/bin/sh", "-c", command + " 2>&1"}, {});
  Outcome outcome;
  process.wait(60s);
  outcome.code = process.exit_code();
  outcome.output = process.output();
  return outcome;
}

// A second host: a network namespace joined to this one by a veth pair.
class NetworkNamespace {
 public:
  NetworkNamespace() {
    const int n = getpid() % 250;
    name_ = "sage-test-" + std::to_string(getpid());
    host_ip_ = "10.251." + std::to_string(n) + ".1";
    guest_ip_ = "10.251." + std::to_string(n) + ".2";
    const std::string outside = "sgh" + std::to_string(getpid());
    const std::string inside = "sgw" + std::to_string(getpid());
    for (const std::string& step : {
             "ip netns add " + name_,
             "ip link add " + outside + " type veth peer name " + inside,
             "ip link set " + inside + " netns " + name_,
             "ip addr add " + host_ip_ + "/24 dev " + outside,
             "ip link set " + outside + " up",
             "ip netns exec " + name_ + " ip addr add " + guest_ip_ + "/24 dev " + inside,
             "ip netns exec " + name_ + " ip link set " + inside + " up",
             "ip netns exec " + name_ + " ip link set lo up",
         }) {
      const Outcome outcome = shell(step);
      if (outcome.code != 0) {
        error_ = "`" + step + "` failed: " + outcome.output;
        return;
      }
      created_ = true;
    }
  }
  ~NetworkNamespace() {
    if (created_) shell("ip netns del " + name_);  // takes the veth pair with it
  }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  const std::string& host_ip() const { return host_ip_; }
  const std::string& guest_ip() const { return guest_ip_; }

 private:
  std::string name_, host_ip_, guest_ip_, error_;
  bool created_ = false;
};

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/sage-cluster-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    state_dir_ = dir;
  }

  void TearDown() override {
    const Outcome stop = cli({"cluster", "stop"});
    EXPECT_EQ(stop.output.find("SIGKILL"), std::string::npos)
        << "a process did not stop on SIGTERM:\n"
        << stop.output;
    // Whatever `cluster stop` could not stop is killed here.
    for (const auto& entry : std::filesystem::directory_iterator(state_dir_)) {
      if (entry.path().extension() != ".pid") continue;
      std::ifstream file(entry.path());
      int pid = 0;
      if (file >> pid && process_alive(pid)) {
        ADD_FAILURE() << entry.path() << " still running after `sage cluster stop`";
        kill(pid, SIGKILL);
      }
    }
    if (!HasFailure()) std::filesystem::remove_all(state_dir_);
  }

  std::vector<std::string> env() const { return {"SAGE_STATE_DIR=" + state_dir_}; }

  Outcome run(const std::vector<std::string>& argv, std::vector<std::string> extra_env = {},
              std::chrono::milliseconds timeout = 120s) {
    // The first definition of a variable wins: extra_env before the defaults.
    auto environment = extra_env;
    for (const auto& variable : env()) environment.push_back(variable);
    ChildProcess process(argv, environment);
    Outcome result;
    if (!process.wait(timeout)) {
      ADD_FAILURE() << "timed out after " << timeout.count() << " ms: " << argv[0] << " "
                    << (argv.size() > 1 ? argv[1] : "") << "\n"
                    << process.output();
    }
    result.code = process.exit_code();
    result.output = process.output();
    return result;
  }

  Outcome cli(std::vector<std::string> args, std::vector<std::string> extra_env = {}) {
    args.insert(args.begin(), SAGE_CLI_BINARY);
    return run(args, std::move(extra_env));
  }

  std::string head_field(const std::string& field) const {
    std::ifstream file(state_dir_ + "/head.json");
    return nlohmann::json::parse(file).at(field).get<std::string>();
  }

  int pid_of(const std::string& name) const {
    std::ifstream file(state_dir_ + "/" + name + ".pid");
    int pid = 0;
    file >> pid;
    return pid;
  }

  // `flags` go before the command (--tls-cert and the like), `start_flags` after it.
  void start_head(std::vector<std::string> flags = {},
                  const std::vector<std::string>& start_flags = {}) {
    for (const std::string& arg :
         {std::string("cluster"), std::string("start"), std::string("--head"),
          std::string("--port"), std::string("0"), std::string("--jobmanager-port"),
          std::string("0"), std::string("--dashboard-port"), std::string("0"),
          std::string("--num-cpus"), head_cpus_, std::string("--memory"), std::string("4GB")}) {
      flags.push_back(arg);
    }
    flags.insert(flags.end(), start_flags.begin(), start_flags.end());
    const Outcome head = cli(flags);
    ASSERT_EQ(head.code, 0) << head.output;
    ASSERT_NE(head.output.find("sage head started"), std::string::npos) << head.output;
  }

  void start_worker(const std::string& node_id, std::vector<std::string> flags = {},
                    const std::vector<std::string>& start_flags = {}) {
    for (const std::string& arg :
         {std::string("cluster"), std::string("start"), std::string("--worker"),
          "--head-address=" + head_field("cluster"), std::string("--node-id"), node_id,
          std::string("--num-cpus"), worker_cpus_, std::string("--memory"),
          std::string("4GB")}) {
      flags.push_back(arg);
    }
    flags.insert(flags.end(), start_flags.begin(), start_flags.end());
    const Outcome worker = cli(flags);
    ASSERT_EQ(worker.code, 0) << worker.output;
  }

  void start_cluster() {
    ASSERT_NO_FATAL_FAILURE(start_head());
    ASSERT_NO_FATAL_FAILURE(start_worker("w1"));
    ASSERT_NO_FATAL_FAILURE(start_worker("w2"));
  }

  nlohmann::json job_json(const std::string& id) {
    const Outcome status = cli({"job", "status", id, "--format", "json"});
    EXPECT_EQ(status.code, 0) << status.output;
    return nlohmann::json::parse(status.output);
  }

  std::string job_state(const std::string& id) { return job_json(id).value("state", ""); }

  // Every node comes to hold no CPUs within `timeout`.
  void expect_no_cpus_held(std::chrono::milliseconds timeout) {
    nlohmann::json nodes;
    EXPECT_TRUE(eventually(
        [&] {
          nodes = nlohmann::json::parse(cli({"cluster", "status", "--format", "json"}).output);
          for (const auto& node : nodes.at("nodes")) {
            if (node.at("used").value("num_cpus", 0.0) != 0.0) return false;
          }
          return true;
        },
        timeout))
        << "a node still holds CPUs of an ended job: " << nodes.dump();
  }

  // Submits an endless job and returns its id.
  std::string submit_endless(const std::string& mode) {
    const Outcome submitted = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, mode});
    EXPECT_EQ(submitted.code, 0) << submitted.output;
    std::smatch id;
    EXPECT_TRUE(std::regex_search(submitted.output, id, std::regex(R"(submitted (job-\w+))")))
        << submitted.output;
    return id[1];
  }

  // Submits the endless job and waits until its instances run on all 3 nodes.
  std::string start_unbounded_job(std::string* logs) {
    const std::string job_id = submit_endless("unbounded");
    EXPECT_TRUE(eventually(
        [&] {
          *logs = cli({"job", "logs", job_id}).output;
          return task_pids(*logs).size() == 3 && logs->find("on w1") != std::string::npos &&
                 logs->find("on w2") != std::string::npos &&
                 logs->find("on head") != std::string::npos;
        },
        30s))
        << "the job's instances did not start on all nodes:\n"
        << *logs;
    return job_id;
  }

  std::string state_dir_;
  std::string head_cpus_ = "2";    // the head node's --num-cpus
  std::string worker_cpus_ = "2";  // each worker's --num-cpus
  std::optional<NetworkNamespace> network_namespace_;
};

}  // namespace sage::testing
