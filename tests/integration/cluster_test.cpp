// A real cluster on 127.0.0.1: a head and two workers started by the `sage`
// command, jobs submitted by programs with RemoteEnvironment, and what users
// see when things go wrong (wrong token, a throwing operator, a killed
// worker, a restarted head, a job that can never fit). Every process is
// stopped at the end of each test, also when it fails.
#include "integration/cluster_fixture.hpp"
#include "support/test_certificates.hpp"

namespace sage::testing {
namespace {

TEST_F(ClusterTest, StatusListsTheHeadAndTwoWorkersWithTheirResources) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  const Outcome table = cli({"cluster", "status"});
  ASSERT_EQ(table.code, 0) << table.output;
  EXPECT_NE(table.output.find("3 nodes (3 alive)"), std::string::npos) << table.output;

  const Outcome json = cli({"cluster", "status", "--format", "json"});
  ASSERT_EQ(json.code, 0) << json.output;
  const auto nodes = nlohmann::json::parse(json.output).at("nodes");
  std::set<std::string> names;
  for (const auto& node : nodes) {
    names.insert(node.at("node_id").get<std::string>());
    EXPECT_TRUE(node.at("alive").get<bool>());
    EXPECT_EQ(node.at("total").at("num_cpus").get<double>(), 2.0);
    EXPECT_EQ(node.at("total").at("memory_bytes").get<std::string>(), "4294967296");
  }
  EXPECT_EQ(names, (std::set<std::string>{"head", "w1", "w2"}));
}

TEST_F(ClusterTest, ReferenceExampleGivesExactlyTenRecordsFromSeveralNodes) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  const Outcome example = cli({"job", "submit", SAGE_EXAMPLE_BINARY});
  ASSERT_EQ(example.code, 0) << example.output;
  EXPECT_NE(example.output.find("Records reaching the sinks: 10 (expected 10)"), std::string::npos)
      << example.output;
  std::set<int> received;
  // Each line is prefixed with the instance that printed it, its process and
  // node; the example's own text says which instance it is, so they must agree.
  static const std::regex sink_line(
      R"(\((\w+)\[(\d)/2\] pid=(\d+), node=(\S+)\) \S+ SINK\[(\d)/2 @ (\S+) pid (\d+)\] )"
      R"(received (\d+))");
  int sink_lines = 0;
  for (std::sregex_iterator it(example.output.begin(), example.output.end(), sink_line), end;
       it != end; ++it) {
    const std::smatch& m = *it;
    EXPECT_EQ(m[1], "ResultSink") << m.str();
    EXPECT_EQ(m[2], m[5]) << m.str();
    EXPECT_EQ(m[3], m[7]) << m.str();
    EXPECT_EQ(m[4], m[6]) << m.str();
    received.insert(std::stoi(m[8]));
    ++sink_lines;
  }
  EXPECT_EQ(sink_lines, 10) << example.output;
  EXPECT_EQ(received, (std::set<int>{3, 6, 9, 12, 15, 18, 21, 24, 27, 30}));
  // The statistics rows: INSTANCE NODE PID ...
  std::set<std::string> nodes;
  std::set<std::string> pids;
  static const std::regex row(R"((\w+)\[\d/\d\]\s+(\S+)\s+(\d+)\s+\d+\s+\d+)");
  for (std::sregex_iterator it(example.output.begin(), example.output.end(), row), end; it != end;
       ++it) {
    nodes.insert((*it)[2]);
    pids.insert((*it)[3]);
  }
  EXPECT_GE(nodes.size(), 2u) << example.output;
  EXPECT_GE(pids.size(), 2u) << example.output;
}

// "final <key> <count> <sum>" lines, sorted, from output with any prefixes.
std::vector<std::string> finals(const std::string& output) {
  std::vector<std::string> lines;
  static const std::regex final_line(R"(final -?\d+ \d+ \d+)");
  for (std::sregex_iterator it(output.begin(), output.end(), final_line), end; it != end; ++it) {
    lines.push_back(it->str());
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

TEST_F(ClusterTest, AMillionKeyedRecordsGiveExactlyTheLocalResultAcrossNodes) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  const Outcome local = run({SAGE_CLUSTER_JOB_BINARY, "keyed", "1000000", "--local"});
  ASSERT_EQ(local.code, 0) << local.output;
  const Outcome remote = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "keyed", "1000000"});
  ASSERT_EQ(remote.code, 0) << remote.output;
  const auto expected = finals(local.output);
  ASSERT_EQ(expected.size(), 1000u);
  long long total = 0;
  for (const auto& line : expected) {
    std::istringstream in(line);
    std::string word;
    long long key, count;
    in >> word >> key >> count;
    total += count;
  }
  EXPECT_EQ(total, 1'000'000);
  EXPECT_EQ(finals(remote.output), expected);
  // Spread: the job's instances ran on all three nodes.
  std::smatch id;
  ASSERT_TRUE(std::regex_search(remote.output, id, std::regex(R"(job (job-\w+) FINISHED)")));
  std::set<std::string> nodes;
  const auto job = job_json(id[1]);
  for (const auto& instance : job.at("instances")) {
    nodes.insert(instance.at("node_id").get<std::string>());
  }
  EXPECT_EQ(nodes, (std::set<std::string>{"head", "w1", "w2"})) << job.dump();
}

TEST_F(ClusterTest, TwoTaskProcessesPerNodeGiveExactlyTheLocalResult) {
  ASSERT_NO_FATAL_FAILURE(start_head());  // one node: every instance is on it
  const Outcome local = run({SAGE_CLUSTER_JOB_BINARY, "keyed", "200000", "--local"});
  ASSERT_EQ(local.code, 0) << local.output;
  const Outcome remote = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "keyed-2p", "200000"});
  ASSERT_EQ(remote.code, 0) << remote.output;
  ASSERT_EQ(finals(local.output).size(), 1000u);
  EXPECT_EQ(finals(remote.output), finals(local.output));
  std::smatch id;
  ASSERT_TRUE(std::regex_search(remote.output, id, std::regex(R"(job (job-\w+) FINISHED)")));
  const auto job = job_json(id[1]);
  // Each operator's instances on the node are dealt over its two processes.
  std::map<std::string, std::set<long long>> pids_of_operator;
  std::set<long long> pids;
  for (const auto& instance : job.at("instances")) {
    EXPECT_EQ(instance.at("node_id").get<std::string>(), "head") << instance.dump();
    const long long pid = instance.at("process_id").get<long long>();
    pids.insert(pid);
    pids_of_operator[instance.at("operator_name").get<std::string>()].insert(pid);
  }
  EXPECT_EQ(pids.size(), 2u) << job.dump();
  for (const auto& [name, operator_pids] : pids_of_operator) {
    EXPECT_EQ(operator_pids.size(), 2u) << name << " in " << job.dump();
  }
  EXPECT_EQ(job.at("nodes"), nlohmann::json::array({"head"})) << job.dump();
}

// Records cross between two processes in both directions through queues of
// one small batch: no task's full queue may hold up another task's records.
TEST_F(ClusterTest, ExchangesBothWaysBetweenProcessesUnderBackpressureDoNotDeadlock) {
  ASSERT_NO_FATAL_FAILURE(start_head());
  ASSERT_NO_FATAL_FAILURE(start_worker("w1"));
  const Outcome job = run(
      {SAGE_CLI_BINARY, "job", "submit", SAGE_CLUSTER_JOB_BINARY, "shuffle", "3000000"}, {}, 60s);
  ASSERT_EQ(job.code, 0) << job.output;
  EXPECT_NE(job.output.find("FINISHED, 1000000 records at the sinks"), std::string::npos)
      << job.output;
}

TEST_F(ClusterTest, AnUnboundedJobIsListedFollowedAndStoppedOnEveryNode) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  std::string logs;
  const std::string job_id = start_unbounded_job(&logs);
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(job_state(job_id), "RUNNING");

  const Outcome list = cli({"job", "list"});
  ASSERT_EQ(list.code, 0);
  EXPECT_TRUE(
      std::regex_search(list.output, std::regex(job_id + R"(\s+cluster-test-unbounded\s+RUNNING)")))
      << list.output;

  const Outcome status = cli({"job", "status", job_id});
  EXPECT_NE(status.output.find("state:     RUNNING"), std::string::npos) << status.output;

  // Live statistics: every instance on every node, running, its counts growing.
  const auto discarded_so_far = [&](const nlohmann::json& job) {
    std::uint64_t total = 0;
    for (const auto& instance : job.at("instances")) {
      if (instance.at("operator_name") == "discard") {
        total += std::stoull(instance.at("records_in").get<std::string>());
      }
    }
    return total;
  };
  nlohmann::json live;
  ASSERT_TRUE(eventually(
      [&] {
        live = job_json(job_id);
        return live.at("instances").size() == 7u;
      },
      10s))
      << "no live statistics of all 7 instances:\n"
      << live.dump();
  std::set<std::string> live_nodes;
  for (const auto& instance : live.at("instances")) {
    EXPECT_TRUE(instance.at("running").get<bool>()) << instance.dump();
    live_nodes.insert(instance.at("node_id").get<std::string>());
  }
  EXPECT_EQ(live_nodes, (std::set<std::string>{"head", "w1", "w2"}));
  const std::uint64_t first = discarded_so_far(live);
  EXPECT_TRUE(eventually([&] { return discarded_so_far(job_json(job_id)) > first; }, 10s))
      << "the live statistics did not change";
  const Outcome table = cli({"job", "status", job_id});
  EXPECT_TRUE(
      std::regex_search(table.output, std::regex(R"(discard\[\d/3\]\s+\S+\s+\d+\s+running\s+\d+)")))
      << table.output;
  EXPECT_NE(table.output.find("BACKPRESSURE"), std::string::npos) << table.output;

  // A follower sees the job end when it is stopped.
  ChildProcess follower({SAGE_CLI_BINARY, "job", "logs", "--follow", job_id}, env());
  ASSERT_TRUE(follower.wait_for_output("instance", 20s)) << follower.output();

  const Outcome stop = cli({"job", "stop", job_id});
  ASSERT_EQ(stop.code, 0) << stop.output;
  EXPECT_NE(stop.output.find("is STOPPED"), std::string::npos) << stop.output;
  EXPECT_TRUE(follower.wait(20s)) << "`job logs --follow` did not end with the job";
  EXPECT_EQ(follower.exit_code(), 0);

  for (int pid : task_pids(logs)) {
    EXPECT_TRUE(eventually([&] { return !process_alive(pid); }, 10s))
        << "task process " << pid << " outlived the stopped job";
  }
  // Stopped, not killed: the sources ended and every record emitted reached the sinks.
  std::uint64_t emitted = 0, discarded = 0;
  const auto stopped = job_json(job_id);
  for (const auto& instance : stopped.at("instances")) {
    const auto count = [&](const char* field) {
      return std::stoull(instance.at(field).get<std::string>());
    };
    if (instance.at("operator_name") == "endless") emitted += count("records_out");
    if (instance.at("operator_name") == "discard") discarded += count("records_in");
  }
  EXPECT_EQ(stopped.at("instances").size(), 7u) << stopped.dump();
  EXPECT_GT(emitted, 0u);
  EXPECT_EQ(discarded, emitted) << "records in flight were lost at the stop";
  EXPECT_EQ(cli({"job", "stop", "job-unknown"}).code, 1);
}

TEST_F(ClusterTest, AWrongOrMissingTokenIsRejectedAndNothingRuns) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  const Outcome wrong = cli({"job", "submit", SAGE_EXAMPLE_BINARY}, {"SAGE_TOKEN=not-the-token"});
  EXPECT_NE(wrong.code, 0);
  EXPECT_NE(wrong.output.find("wrong cluster token"), std::string::npos) << wrong.output;

  const Outcome listed = cli({"--token", "not-the-token", "job", "list"});
  EXPECT_EQ(listed.code, 1);
  EXPECT_NE(listed.output.find("wrong cluster token"), std::string::npos) << listed.output;

  // No token at all: a state directory without a token file, and no SAGE_TOKEN.
  char empty_dir[] = "/tmp/sage-no-token-XXXXXX";
  ASSERT_NE(mkdtemp(empty_dir), nullptr);
  const Outcome missing = run({SAGE_EXAMPLE_BINARY}, {"SAGE_STATE_DIR=" + std::string(empty_dir),
                                                      "SAGE_ADDRESS=" + head_field("jobmanager")});
  std::filesystem::remove_all(empty_dir);
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.output.find("no cluster token"), std::string::npos) << missing.output;

  const Outcome jobs = cli({"job", "list"});
  EXPECT_NE(jobs.output.find("(no jobs yet)"), std::string::npos) << jobs.output;

  const Outcome worker =
      cli({"cluster", "start", "--worker", "--head-address=" + head_field("cluster"), "--node-id",
           "intruder", "--token", "not-the-token"});
  EXPECT_EQ(worker.code, 1);
  EXPECT_NE(worker.output.find("refused node 'intruder': wrong cluster token"), std::string::npos)
      << worker.output;
}

TEST_F(ClusterTest, WithTlsOnlyNodesAndClientsThatTrustTheClustersCaTakePart) {
  const std::string tls_dir = state_dir_ + "/tls";
  std::filesystem::create_directory(tls_dir);
  const net::TlsFiles tls = testing::write_test_certificates(tls_dir);
  const std::vector<std::string> node_flags = {"--tls-cert", tls.cert,   "--tls-key",
                                               tls.key,      "--tls-ca", tls.ca};
  ASSERT_NO_FATAL_FAILURE(start_head(node_flags));
  ASSERT_NO_FATAL_FAILURE(start_worker("w1", node_flags));

  // The example's instances exchange records between the head's node and w1
  // over TLS; the client trusts the CA through the environment.
  const Outcome example = cli({"job", "submit", SAGE_EXAMPLE_BINARY}, {"SAGE_TLS_CA=" + tls.ca});
  ASSERT_EQ(example.code, 0) << example.output;
  EXPECT_NE(example.output.find("Records reaching the sinks: 10 (expected 10)"), std::string::npos)
      << example.output;
  EXPECT_TRUE(std::regex_search(example.output, std::regex(R"(\w+\[\d/\d\]\s+w1\s+\d+)")))
      << "no instance ran on w1:\n"
      << example.output;

  // The task processes on both nodes run their data plane with the node's files.
  const Outcome tls_env =
      cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "tls-env"}, {"SAGE_TLS_CA=" + tls.ca});
  ASSERT_EQ(tls_env.code, 0) << tls_env.output;
  std::set<std::string> pids;
  static const std::regex tls_line(R"(tls ca=(\S+) cert=(\S+) pid (\d+))");
  for (std::sregex_iterator it(tls_env.output.begin(), tls_env.output.end(), tls_line), end;
       it != end; ++it) {
    EXPECT_EQ((*it)[1], tls.ca);
    EXPECT_EQ((*it)[2], tls.cert);
    pids.insert((*it)[3]);
  }
  EXPECT_EQ(pids.size(), 2u) << "expected task processes on the head's node and w1:\n"
                             << tls_env.output;

  // Without the CA, neither a client nor a worker gets in, and they say why.
  const Outcome status = cli({"cluster", "status"});
  EXPECT_EQ(status.code, 1);
  EXPECT_NE(status.output.find("a head started with TLS needs --tls-ca or SAGE_TLS_CA"),
            std::string::npos)
      << status.output;
  const Outcome plain_worker =
      cli({"cluster", "start", "--worker", "--head-address=" + head_field("cluster"), "--node-id",
           "plain"});
  EXPECT_EQ(plain_worker.code, 1);
  EXPECT_NE(plain_worker.output.find("needs --tls-ca"), std::string::npos) << plain_worker.output;

  // A CA but no certificate of its own: a worker could not serve its data plane.
  const Outcome no_certificate =
      cli({"--tls-ca", tls.ca, "cluster", "start", "--worker",
           "--head-address=" + head_field("cluster"), "--node-id", "half"});
  EXPECT_EQ(no_certificate.code, 1);
  EXPECT_NE(no_certificate.output.find("pass --tls-cert and --tls-key"), std::string::npos)
      << no_certificate.output;

  // A client trusting another CA refuses the head.
  const std::string other_dir = state_dir_ + "/other-ca";
  std::filesystem::create_directory(other_dir);
  const net::TlsFiles other = testing::write_test_certificates(other_dir);
  const Outcome distrustful = cli({"--tls-ca", other.ca, "job", "list"});
  EXPECT_EQ(distrustful.code, 1);
  EXPECT_NE(distrustful.output.find(
                "with TLS on, also that the head uses TLS, with a certificate that names"),
            std::string::npos)
      << distrustful.output;

  const Outcome nodes = cli({"--tls-ca", tls.ca, "cluster", "status"});
  EXPECT_EQ(nodes.code, 0) << nodes.output;
  EXPECT_NE(nodes.output.find("2 nodes (2 alive)"), std::string::npos) << nodes.output;
}

TEST_F(ClusterTest, LongLinesAndBytesThatAreNotUtf8AllReachTheClientAndTheLogs) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  const Outcome job = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "loud"});
  ASSERT_EQ(job.code, 0) << job.output.substr(0, 2000);
  std::smatch id;
  ASSERT_TRUE(std::regex_search(job.output, id, std::regex(R"(job (job-\w+) FINISHED)")))
      << job.output.substr(job.output.size() - std::min<std::size_t>(job.output.size(), 2000));
  const std::string logs = cli({"job", "logs", id[1]}).output;
  for (const std::string* output : {&job.output, &logs}) {
    // The sink is chained to the source, so its lines carry the chain's first operator.
    int long_lines = 0;
    std::istringstream lines(*output);
    for (std::string line; std::getline(lines, line);) {
      const auto text = line.find(") long ");
      if (line.starts_with("(one[0/1] pid=") && text != std::string::npos &&
          line.size() - line.find(' ', text + 7) - 1 == 60'000 && line.ends_with("xxxx")) {
        ++long_lines;
      }
    }
    EXPECT_EQ(long_lines, 200);
    EXPECT_NE(output->find(") before\n"), std::string::npos);
    EXPECT_NE(output->find(") bad \xef\xbf\xbd\xef\xbf\xbd bytes\n"), std::string::npos);
    EXPECT_NE(output->find(") after\n"), std::string::npos);
  }
}

TEST_F(ClusterTest, AThrowingOperatorFailsTheJobWithItsMessage) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  const Outcome job = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "throw"});
  EXPECT_EQ(job.code, 1);
  EXPECT_NE(job.output.find("boom on record 7"), std::string::npos) << job.output;
  EXPECT_TRUE(std::regex_search(job.output,
                                std::regex(R"(operator 'explode' instance [01]/2 on node \w+)")))
      << "names the instance and node:\n"
      << job.output;

  const auto jobs = nlohmann::json::parse(cli({"job", "list", "--format", "json"}).output);
  ASSERT_EQ(jobs.at("jobs").size(), 1u);
  EXPECT_EQ(jobs["jobs"][0].value("state", ""), "FAILED");
  EXPECT_NE(jobs["jobs"][0].value("error", "").find("boom on record 7"), std::string::npos);
}

TEST_F(ClusterTest, AKilledWorkerFailsItsJobWithinFiveSecondsNamingTheNode) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  std::string logs;
  const std::string job_id = start_unbounded_job(&logs);
  ASSERT_FALSE(HasFailure());

  ASSERT_EQ(kill(pid_of("worker-w2"), SIGKILL), 0);
  const auto killed_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually([&] { return job_state(job_id) == "FAILED"; }, 5s))
      << "the job is " << job_state(job_id) << " 5 s after its worker was killed";
  const auto failed_after = std::chrono::steady_clock::now() - killed_at;
  const auto job = job_json(job_id);
  EXPECT_NE(job.value("error", "").find("'w2'"), std::string::npos) << job.dump();
  std::printf("job FAILED %.2f s after worker w2 was killed: %s\n",
              std::chrono::duration<double>(failed_after).count(), job.value("error", "").c_str());

  for (int pid : task_pids(logs)) {
    EXPECT_TRUE(eventually([&] { return !process_alive(pid); }, 10s))
        << "task process " << pid << " was left behind";
  }
  const auto nodes = nlohmann::json::parse(cli({"cluster", "status", "--format", "json"}).output);
  for (const auto& node : nodes.at("nodes")) {
    EXPECT_EQ(node.at("alive").get<bool>(), node.at("node_id") != "w2") << node.dump();
  }
}

TEST_F(ClusterTest, JobsAreStillListedAfterTheHeadRestarts) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  const Outcome example = cli({"job", "submit", SAGE_EXAMPLE_BINARY});
  ASSERT_EQ(example.code, 0) << example.output;
  const auto before = nlohmann::json::parse(cli({"job", "list", "--format", "json"}).output);
  ASSERT_EQ(before.at("jobs").size(), 1u);
  const std::string job_id = before["jobs"][0].value("job_id", "");

  std::string token_before;
  std::ifstream(state_dir_ + "/token") >> token_before;
  const int head = pid_of("head");
  ASSERT_EQ(kill(head, SIGTERM), 0);
  ASSERT_TRUE(eventually([&] { return !process_alive(head); }, 20s)) << "the head did not stop";
  ASSERT_NO_FATAL_FAILURE(start_head());
  std::string token_after;
  std::ifstream(state_dir_ + "/token") >> token_after;
  EXPECT_EQ(token_after, token_before) << "workers and clients must keep their token";

  const auto after = nlohmann::json::parse(cli({"job", "list", "--format", "json"}).output);
  ASSERT_EQ(after.at("jobs").size(), 1u) << after.dump();
  EXPECT_EQ(after["jobs"][0].value("job_id", ""), job_id);
  EXPECT_EQ(after["jobs"][0].value("state", ""), "FINISHED");
  const Outcome logs = cli({"job", "logs", job_id});
  EXPECT_NE(logs.output.find("received 30"), std::string::npos) << logs.output;
}

TEST_F(ClusterTest, TheHeadKeepsItsJobHistoryAndEachJobsNewestOutputWithinLimits) {
  ASSERT_NO_FATAL_FAILURE(start_head({}, {"--job-history", "2", "--max-job-output", "1MB"}));
  // 200 lines of 60 kB: about 12 MB of output.
  const Outcome loud = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "loud"});
  ASSERT_EQ(loud.code, 0) << loud.output.substr(0, 2000);
  std::smatch id;
  ASSERT_TRUE(std::regex_search(loud.output, id, std::regex(R"(job (job-\w+) FINISHED)")));
  const std::string loud_id = id[1];

  const Outcome logs = cli({"job", "logs", loud_id});
  ASSERT_EQ(logs.code, 0) << logs.output.substr(0, 2000);
  std::smatch notice;
  ASSERT_TRUE(std::regex_search(
      logs.output, notice,
      std::regex(R"(^\[sage\] (\d+) earlier output lines of this job were discarded: the head )"
                 R"(keeps the last 1\.0 MiB of each job's output \(sage cluster start --head )"
                 R"(--max-job-output\)\n)")))
      << logs.output.substr(0, 2000);
  const int kept_long_lines = 200 - std::stoi(notice[1]);
  EXPECT_GT(kept_long_lines, 10);
  EXPECT_LE(kept_long_lines, 18) << "1 MiB holds 17 lines of 60 kB";
  EXPECT_NE(logs.output.find(") long 199 "), std::string::npos);
  EXPECT_TRUE(logs.output.ends_with(") after\n")) << logs.output.substr(logs.output.size() - 200);
  EXPECT_LE(logs.output.size(), (1u << 20) + 4096);

  // Two more jobs: the loud one, which ended first, is forgotten with its output.
  for (int i = 0; i < 2; ++i) {
    const Outcome example = cli({"job", "submit", SAGE_EXAMPLE_BINARY});
    ASSERT_EQ(example.code, 0) << example.output;
  }
  const auto listed_ids = [&] {
    std::vector<std::string> ids;
    const auto jobs = nlohmann::json::parse(cli({"job", "list", "--format", "json"}).output);
    for (const auto& job : jobs.at("jobs")) ids.push_back(job.value("job_id", ""));
    return ids;
  };
  std::vector<std::string> ids;
  ASSERT_TRUE(eventually(
      [&] {
        ids = listed_ids();
        return ids.size() == 2;
      },
      10s))
      << ids.size() << " jobs listed";
  EXPECT_EQ(std::count(ids.begin(), ids.end(), loud_id), 0);
  const Outcome forgotten = cli({"job", "logs", loud_id});
  EXPECT_EQ(forgotten.code, 1);
  EXPECT_NE(forgotten.output.find("no job '" + loud_id + "'"), std::string::npos)
      << forgotten.output;

  // A head restarted with a shorter history forgets what is beyond it at once.
  const int head = pid_of("head");
  ASSERT_EQ(kill(head, SIGTERM), 0);
  ASSERT_TRUE(eventually([&] { return !process_alive(head); }, 20s)) << "the head did not stop";
  ASSERT_NO_FATAL_FAILURE(start_head({}, {"--job-history", "1"}));
  EXPECT_EQ(listed_ids(), std::vector<std::string>{ids.front()}) << "the newest job stays";
}

TEST_F(ClusterTest, AnInstanceUsingMoreMemoryThanItDeclaresFailsItsJobSayingSo) {
  ASSERT_NO_FATAL_FAILURE(start_head());
  const Outcome job = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "memory-hog"});
  EXPECT_EQ(job.code, 1) << job.output;
  EXPECT_TRUE(std::regex_search(
      job.output, std::regex(R"(the task process on node 'head' used \d+ MiB of memory, over the )"
                             R"(256 MiB its instances declare \(resources\.memory\), and was )"
                             R"(killed; raise the operators' memory or make them use less)")))
      << job.output;
}

// A job that fails before all its processes started (here: a node cannot
// open its data-plane port) ends, and gives back what it held on every node.
TEST_F(ClusterTest, AJobThatFailsWhileItIsPreparedGivesItsResourcesBack) {
  ASSERT_NO_FATAL_FAILURE(start_head());
  // 192.0.2.1 (TEST-NET-1) is no address of this machine.
  ASSERT_NO_FATAL_FAILURE(start_worker("unreachable", {}, {"--node-address", "192.0.2.1"}));
  const Outcome job = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "pair"});
  EXPECT_EQ(job.code, 1) << job.output;
  EXPECT_NE(job.output.find("node 'unreachable' could not prepare a task process: cannot listen "
                            "on 192.0.2.1"),
            std::string::npos)
      << job.output;
  expect_no_cpus_held(10s);
}

// A job fails while one of its nodes is frozen (its worker cannot kill or
// report the job's process there); when that node is then declared dead, the
// job still settles and every node gets its resources back.
TEST_F(ClusterTest, AFailedJobWhoseNodeThenDiesGivesItsResourcesBack) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  const std::string job_id = submit_endless("reserving");  // 2 CPUs on each node
  std::string logs;
  std::smatch on_w1;
  ASSERT_TRUE(eventually(
      [&] {
        logs = cli({"job", "logs", job_id}).output;
        return task_pids(logs).size() == 3 &&
               std::regex_search(logs, on_w1, std::regex(R"(\(pid=(\d+), node=w1\))"));
      },
      30s))
      << logs;
  const int w2 = pid_of("worker-w2");
  ASSERT_EQ(kill(w2, SIGSTOP), 0);
  ASSERT_EQ(kill(std::stoi(on_w1[1]), SIGKILL), 0);
  EXPECT_TRUE(eventually([&] { return job_state(job_id) == "FAILED"; }, 10s)) << job_state(job_id);
  expect_no_cpus_held(15s);
  kill(w2, SIGCONT);
}

TEST_F(ClusterTest, AJobEndsWhenItsProcessEndsAndWhatItLeftBehindIsKilled) {
  ASSERT_NO_FATAL_FAILURE(start_head());
  const Outcome job = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "orphan"});
  EXPECT_EQ(job.code, 0) << job.output;
  EXPECT_NE(job.output.find(" FINISHED"), std::string::npos) << job.output;
  std::smatch child;
  ASSERT_TRUE(std::regex_search(job.output, child, std::regex(R"(left child (\d+) behind)")))
      << job.output;
  EXPECT_TRUE(eventually([&] { return !process_alive(std::stoi(child[1])); }, 10s))
      << "the child the task process left behind is still running";
}

TEST_F(ClusterTest, AFollowerIsToldWhenTheHeadShutsDownUnderIt) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  std::string logs;
  const std::string job_id = start_unbounded_job(&logs);
  ASSERT_FALSE(HasFailure());
  ChildProcess follower({SAGE_CLI_BINARY, "job", "logs", "--follow", job_id}, env());
  ASSERT_TRUE(follower.wait_for_output("instance", 20s)) << follower.output();

  ASSERT_EQ(kill(pid_of("head"), SIGTERM), 0);
  ASSERT_TRUE(follower.wait(20s)) << "`job logs --follow` did not end with the head";
  EXPECT_EQ(follower.exit_code(), 1) << "a follower must not take the head's end for the job's";
  EXPECT_NE(follower.output().find("the head shut down while the job was followed"),
            std::string::npos)
      << follower.output().substr(follower.output().size() -
                                  std::min<std::size_t>(follower.output().size(), 1000));
}

TEST_F(ClusterTest, AJobThatCanNeverFitIsRejectedAtSubmit) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  const Outcome job = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "greedy"});
  EXPECT_EQ(job.code, 1);
  EXPECT_NE(job.output.find("operator 'hungry' needs 64 CPUs"), std::string::npos) << job.output;
  EXPECT_NE(job.output.find("no node has that"), std::string::npos) << job.output;
  // Each instance fits a node, but together they need more than the cluster has.
  const Outcome crowd = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "crowd"});
  EXPECT_EQ(crowd.code, 1);
  EXPECT_NE(crowd.output.find("the job's instances need 8 CPUs, 0 GPUs, 0 MiB memory in all and "
                              "do not fit the cluster even when it is idle: there is no room left "
                              "for 2 CPUs, 0 GPUs, 0 MiB memory for an instance of 'wide' "
                              "(nodes: 'head' 2 CPUs"),
            std::string::npos)
      << crowd.output;
  // As many CPUs in all as the cluster has, but in pieces no node can hold two of.
  const Outcome fragmented = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "fragmented"});
  EXPECT_EQ(fragmented.code, 1);
  EXPECT_NE(fragmented.output.find("need 6 CPUs, 0 GPUs, 0 MiB memory in all and do not fit the "
                                   "cluster even when it is idle: there is no room left for 1.5 "
                                   "CPUs"),
            std::string::npos)
      << fragmented.output;
  EXPECT_NE(cli({"job", "list"}).output.find("(no jobs yet)"), std::string::npos);

  // Fits only packed (the 2-CPU instance on a node of its own): accepted and run.
  const Outcome packable = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "packable"});
  EXPECT_EQ(packable.code, 0) << packable.output;
  EXPECT_NE(packable.output.find("FINISHED, 3 records at the sinks"), std::string::npos)
      << packable.output;
}

TEST_F(ClusterTest, AJobThatFitsOnlyLaterWaitsPendingWithItsReason) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  // Each job holds 2 CPUs on each of the 3 nodes: the second must wait.
  const std::string first = submit_endless("reserving");
  ASSERT_TRUE(eventually([&] { return job_state(first) == "RUNNING"; }, 20s));
  const std::string second = submit_endless("reserving");
  const auto waiting = job_json(second);
  EXPECT_EQ(waiting.value("state", ""), "PENDING");
  EXPECT_NE(waiting.value("pending_reason", "").find("waiting for 2 CPUs"), std::string::npos)
      << waiting.dump();
  const Outcome status = cli({"job", "status", second});
  EXPECT_NE(status.output.find("waiting:   waiting for 2 CPUs"), std::string::npos)
      << status.output;

  ASSERT_EQ(cli({"job", "stop", first}).code, 0);
  EXPECT_TRUE(eventually([&] { return job_state(second) == "RUNNING"; }, 20s))
      << "the pending job did not start when the resources were freed: " << job_state(second);
  EXPECT_EQ(cli({"job", "stop", second}).code, 0);
}

TEST_F(ClusterTest, EachInstanceKnowsWhichOfItsProcessGpusAreItsOwn) {
  ASSERT_NO_FATAL_FAILURE(start_head());
  for (const char* node : {"w1", "w2"}) {
    const Outcome worker =
        cli({"cluster", "start", "--worker", "--head-address=" + head_field("cluster"), "--node-id",
             node, "--num-cpus", "4", "--num-gpus", "3"});
    ASSERT_EQ(worker.code, 0) << worker.output;
  }
  // A job that holds GPU 0 of one node first, so that there the node's GPU
  // indices and CUDA's numbers in the process differ.
  const std::string hog = submit_endless("gpu-hog");
  std::string hog_logs;
  std::smatch hog_node;
  static const std::regex hog_line(R"(gpu hog\[0/1\] on (\w+) pid \d+ holds \[0\] of \[0\])");
  ASSERT_TRUE(eventually(
      [&] {
        hog_logs = cli({"job", "logs", hog}).output;
        return std::regex_search(hog_logs, hog_node, hog_line);
      },
      20s))
      << "the GPU hog did not start:\n"
      << hog_logs;
  // Three instances of one GPU each, spread over w1 and w2.
  const Outcome job = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "gpus"});
  ASSERT_EQ(job.code, 0) << job.output;
  static const std::regex line(
      R"(gpu gpu\[(\d)/3\] on (\w+) pid (\d+) holds \[([\d,]*)\] of \[([\d,]*)\])");
  std::map<std::string, std::set<std::string>> held_in_process;  // pid -> CUDA numbers held
  std::map<std::string, std::string> visible_in_process;
  std::map<std::string, std::string> node_of_process;
  int instances = 0;
  for (std::sregex_iterator it(job.output.begin(), job.output.end(), line), end; it != end; ++it) {
    const std::smatch& m = *it;
    ++instances;
    EXPECT_EQ(m[4].str().find(','), std::string::npos) << "holds more than one GPU: " << m.str();
    EXPECT_TRUE(held_in_process[m[3]].insert(m[4]).second) << "two instances hold " << m.str();
    visible_in_process[m[3]] = m[5];
    node_of_process[m[3]] = m[2];
  }
  EXPECT_EQ(instances, 3) << job.output;
  for (const auto& [pid, held] : held_in_process) {
    // The process sees exactly its instances' GPUs, numbered 0.. by CUDA.
    const std::string& visible = visible_in_process[pid];
    const auto count =
        static_cast<std::size_t>(std::count(visible.begin(), visible.end(), ',') + 1);
    EXPECT_EQ(held.size(), count) << pid << " sees [" << visible << "]";
    std::set<std::string> expected;
    for (std::size_t i = 0; i < count; ++i) expected.insert(std::to_string(i));
    EXPECT_EQ(held, expected) << pid << " sees [" << visible << "]";
    if (node_of_process[pid] == hog_node[1]) {
      EXPECT_EQ(visible.find('0'), std::string::npos) << "the hog's GPU 0 is visible: " << visible;
    }
  }
  EXPECT_NE(std::find_if(node_of_process.begin(), node_of_process.end(),
                         [&](const auto& p) { return p.second == hog_node[1]; }),
            node_of_process.end())
      << "no instance shares a node with the hog:\n"
      << job.output;
  EXPECT_EQ(visible_in_process.size(), 2u) << job.output;
  EXPECT_EQ(cli({"job", "stop", hog}).code, 0);
}

TEST_F(ClusterTest, AWorkerOnAnotherHostJoinsByItsAddressAndRunsPartOfAJob) {
  if (geteuid() != 0)
    GTEST_SKIP() << "network namespaces need root; this test runs as uid " << geteuid();
  // A fixture member, so that it is removed after TearDown stopped the cluster.
  NetworkNamespace& other_host = network_namespace_.emplace();
  if (!other_host.error().empty()) {
    GTEST_SKIP() << "cannot make a network namespace here: " << other_host.error();
  }
  const Outcome head =
      cli({"cluster", "start", "--head", "--host", other_host.host_ip(), "--port", "0",
           "--jobmanager-port", "0", "--dashboard-port", "0", "--num-cpus", "2"});
  ASSERT_EQ(head.code, 0) << head.output;
  const Outcome worker =
      run({"/bin/sh", "-c",
           "exec ip netns exec " + other_host.name() + " " + SAGE_CLI_BINARY +
               " cluster start --worker --head-address=" + head_field("cluster") +
               " --node-id remote --num-cpus 2 2>&1"});
  ASSERT_EQ(worker.code, 0) << worker.output;
  EXPECT_NE(worker.output.find("data plane on " + other_host.guest_ip()), std::string::npos)
      << worker.output;

  const auto nodes = nlohmann::json::parse(cli({"cluster", "status", "--format", "json"}).output);
  std::map<std::string, std::string> address_of;
  for (const auto& node : nodes.at("nodes")) {
    address_of[node.at("node_id")] = node.at("address");
  }
  EXPECT_EQ(address_of["remote"], other_host.guest_ip());
  EXPECT_EQ(address_of["head"], other_host.host_ip());

  const Outcome example = cli({"job", "submit", SAGE_EXAMPLE_BINARY});
  ASSERT_EQ(example.code, 0) << example.output;
  EXPECT_NE(example.output.find("Records reaching the sinks: 10 (expected 10)"), std::string::npos);
  EXPECT_TRUE(std::regex_search(example.output, std::regex(R"(\w+\[\d/\d\]\s+remote\s+\d+)")))
      << "no instance ran on the other host:\n"
      << example.output;
}

TEST_F(ClusterTest, AHeadOnAllInterfacesOfAHostWithoutARouteWarnsOthersCannotReachIt) {
  if (geteuid() != 0)
    GTEST_SKIP() << "network namespaces need root; this test runs as uid " << geteuid();
  NetworkNamespace& isolated = network_namespace_.emplace();  // only a link to this host
  if (!isolated.error().empty()) {
    GTEST_SKIP() << "cannot make a network namespace here: " << isolated.error();
  }
  const Outcome head = run({"/bin/sh", "-c",
                            "exec ip netns exec " + isolated.name() + " " + SAGE_CLI_BINARY +
                                " cluster start --head --host 0.0.0.0 --port 0 "
                                "--jobmanager-port 0 --dashboard-port 0 --num-cpus 2 2>&1"});
  ASSERT_EQ(head.code, 0) << head.output;
  EXPECT_NE(head.output.find("has no default route, so its data plane is on 127.0.0.1, which "
                             "other machines cannot reach; pass --node-address"),
            std::string::npos)
      << head.output;
}

TEST_F(ClusterTest, CommandsSayWhatIsWrong) {
  const Outcome no_head = cli({"cluster", "status"});
  EXPECT_EQ(no_head.code, 1);
  EXPECT_NE(no_head.output.find("no sage head answers at"), std::string::npos) << no_head.output;

  const Outcome no_worker_head = cli({"cluster", "start", "--worker", "--head-address=127.0.0.1:1",
                                      "--node-id", "lonely", "--token", "t"});
  EXPECT_EQ(no_worker_head.code, 1);
  EXPECT_NE(no_worker_head.output.find("no sage head answers at 127.0.0.1:1"), std::string::npos)
      << no_worker_head.output;

  // A program with no head to submit to and no token: the head is the problem.
  const Outcome program = run({SAGE_EXAMPLE_BINARY}, {"SAGE_ADDRESS=127.0.0.1:1"});
  EXPECT_EQ(program.code, 1);
  EXPECT_NE(program.output.find("no sage head answers at 127.0.0.1:1"), std::string::npos)
      << program.output;
  // The same through `sage job submit`, which has no token to pass on either.
  const Outcome submitted =
      cli({"job", "submit", SAGE_EXAMPLE_BINARY}, {"SAGE_ADDRESS=127.0.0.1:1"});
  EXPECT_EQ(submitted.code, 1);
  EXPECT_NE(submitted.output.find("no sage head answers at 127.0.0.1:1"), std::string::npos)
      << submitted.output;
  EXPECT_EQ(submitted.output.find("no cluster token"), std::string::npos) << submitted.output;

  const Outcome bad_memory = cli({"cluster", "start", "--head", "--memory", "lots"});
  EXPECT_EQ(bad_memory.code, 2);
  EXPECT_NE(bad_memory.output.find("--memory 'lots' is not an amount of bytes"), std::string::npos)
      << bad_memory.output;
  EXPECT_FALSE(std::filesystem::exists(state_dir_ + "/head.json"));
  const Outcome bad_output_limit = cli({"cluster", "start", "--head", "--max-job-output", "0"});
  EXPECT_EQ(bad_output_limit.code, 2);
  EXPECT_NE(bad_output_limit.output.find("--max-job-output '0' is not an amount of bytes"),
            std::string::npos)
      << bad_output_limit.output;
  const Outcome head_flag_on_worker =
      cli({"cluster", "start", "--worker", "--head-address=127.0.0.1:1", "--job-history", "5"});
  EXPECT_EQ(head_flag_on_worker.code, 2);
  EXPECT_NE(head_flag_on_worker.output.find("--worker excludes --job-history"), std::string::npos)
      << head_flag_on_worker.output;
  EXPECT_FALSE(std::filesystem::exists(state_dir_ + "/head.json"));

  ASSERT_NO_FATAL_FAILURE(start_head());
  const std::string jobmanager_port = head_field("jobmanager").substr(10);
  char other[] = "/tmp/sage-second-head-XXXXXX";
  ASSERT_NE(mkdtemp(other), nullptr);
  const Outcome taken =
      cli({"--state-dir", other, "cluster", "start", "--head", "--jobmanager-port", jobmanager_port,
           "--port", "0", "--dashboard-port", "0"});
  std::filesystem::remove_all(other);
  EXPECT_EQ(taken.code, 1);
  EXPECT_NE(taken.output.find("port is in use"), std::string::npos) << taken.output;

  const Outcome twice = cli({"cluster", "start", "--head", "--port", "0", "--jobmanager-port", "0",
                             "--dashboard-port", "0"});
  EXPECT_EQ(twice.code, 1);
  EXPECT_NE(twice.output.find("already running"), std::string::npos) << twice.output;

  const Outcome unknown = cli({"job", "status", "job-nope"});
  EXPECT_EQ(unknown.code, 1);
  EXPECT_NE(unknown.output.find("no job 'job-nope'"), std::string::npos) << unknown.output;

  const Outcome submit_help = cli({"job", "submit", "--help"});
  EXPECT_EQ(submit_help.code, 0);
  EXPECT_NE(submit_help.output.find("everything after `submit` goes to the program"),
            std::string::npos)
      << submit_help.output;

  EXPECT_EQ(cli({"cluster", "start", "--head", "--worker"}).code, 2);
  EXPECT_NE(cli({"cluster", "start", "--worker"}).output.find("needs --head-address"),
            std::string::npos);
}

}  // namespace
}  // namespace sage::testing
