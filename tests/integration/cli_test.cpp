// The `sage` command and RemoteEnvironment as users meet them: heads that
// stop cleanly on SIGTERM, a token kept out of the process list, user metrics
// of a job on a cluster, `job submit` of a program that submits nothing or
// waits for resources, a program run directly against a head on any port,
// and the refusals of bad flags. Every process is stopped at the end of each
// test, also when it fails.
#include <algorithm>
#include <thread>

#include "integration/cluster_fixture.hpp"

namespace sage::testing {
namespace {

// The arguments of a running process, space-separated.
std::string command_line_of(int pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string arguments((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::replace(arguments.begin(), arguments.end(), '\0', ' ');
  return arguments;
}

// The first job id in `output` ("job-..."), or "".
std::string job_id_in(const std::string& output) {
  std::smatch id;
  return std::regex_search(output, id, std::regex(R"((job-\w+))")) ? id[1].str() : "";
}

using CliTest = ClusterTest;

TEST_F(CliTest, HeadsStoppedBySigtermExitCleanlyEveryTime) {
  constexpr int kHeads = 50;
  for (int i = 0; i < kHeads; ++i) {
    // Half without a worker on the head (--num-cpus 0), half with one.
    const std::string cpus = i % 2 == 0 ? "0" : "1";
    ChildProcess head({SAGE_CLI_BINARY, "cluster", "start", "--head", "--foreground", "--port", "0",
                       "--jobmanager-port", "0", "--dashboard-port", "0", "--num-cpus", cpus},
                      env());
    ASSERT_TRUE(head.wait_for_output("Stop it with: sage cluster stop", 20s))
        << "head " << i << " (--num-cpus " << cpus << ") did not start:\n"
        << head.output();
    ASSERT_EQ(kill(head.pid(), SIGTERM), 0);
    ASSERT_TRUE(head.wait(20s)) << "head " << i << " did not stop on SIGTERM:\n" << head.output();
    ASSERT_EQ(head.exit_code(), 0) << "head " << i << " (--num-cpus " << cpus
                                   << ") ended with 128 + signal or an error on SIGTERM:\n"
                                   << head.output();
  }
}

TEST_F(CliTest, StopSaysWhenADaemonDidNotEndCleanly) {
  // A process that dies of SIGTERM without the daemon's clean exit, as a
  // crashing head would, standing in for the head of this state directory:
  // flock(1) holds head.pid locked while the sleep whose pid it holds runs.
  const std::string pid_path = state_dir_ + "/head.pid";
  ChildProcess crashing(
      {"/usr/bin/flock", pid_path, "/bin/sh", "-c", "echo $$ > " + pid_path + "; exec sleep 600"},
      {});
  ASSERT_TRUE(eventually([&] { return pid_of("head") > 0; }, 10s)) << "no pid in " << pid_path;
  const int sleeping = pid_of("head");
  std::thread reaper([&] { crashing.wait(30s); });  // so that it does not stay a zombie
  const Outcome stop = cli({"cluster", "stop"});
  reaper.join();
  EXPECT_EQ(stop.code, 1) << stop.output;
  EXPECT_NE(stop.output.find("head (pid " + std::to_string(sleeping) +
                             ") did not stop cleanly: it crashed or was killed while stopping; "
                             "see its log " +
                             state_dir_ + "/logs/head.log"),
            std::string::npos)
      << stop.output;
  EXPECT_EQ(stop.output.find("stopped head"), std::string::npos) << stop.output;
}

// A pid file that no process holds (its head was killed, or the machine
// restarted) names a pid that may be anyone's now: stop leaves it alone.
TEST_F(CliTest, StopLeavesAloneTheProcessAStalePidFileNames) {
  ChildProcess bystander({"/bin/sleep", "600"}, {});
  {
    std::ofstream pid_file(state_dir_ + "/head.pid");
    pid_file << bystander.pid() << '\n';
  }
  const Outcome stop = cli({"cluster", "stop"});
  EXPECT_EQ(stop.code, 0) << stop.output;
  EXPECT_NE(stop.output.find("no sage head or worker of " + state_dir_ + " is running"),
            std::string::npos)
      << stop.output;
  EXPECT_TRUE(process_alive(bystander.pid())) << "stop killed a process no head of it held";
  EXPECT_FALSE(std::filesystem::exists(state_dir_ + "/head.pid")) << "the stale file stayed";
  kill(bystander.pid(), SIGKILL);
  bystander.wait(30s);

  // Nor does a stale file keep a head from starting.
  {
    std::ofstream pid_file(state_dir_ + "/head.pid");
    pid_file << getpid() << '\n';
  }
  ASSERT_NO_FATAL_FAILURE(start_head());
}

// A foreground head holds its pid file as a daemon does: a second head on the
// same state directory is refused, and `sage cluster stop` stops it.
TEST_F(CliTest, AForegroundHeadHoldsItsStateDirectory) {
  ChildProcess head({SAGE_CLI_BINARY, "cluster", "start", "--head", "--foreground", "--port", "0",
                     "--jobmanager-port", "0", "--dashboard-port", "0", "--num-cpus", "0"},
                    env());
  ASSERT_TRUE(head.wait_for_output("Stop it with: sage cluster stop", 20s)) << head.output();
  const Outcome second = cli({"cluster", "start", "--head", "--port", "0", "--jobmanager-port", "0",
                              "--dashboard-port", "0", "--num-cpus", "0"});
  EXPECT_EQ(second.code, 1) << second.output;
  EXPECT_NE(second.output.find("is already running as pid " + std::to_string(head.pid())),
            std::string::npos)
      << second.output;
  const Outcome stop = cli({"cluster", "stop"});
  EXPECT_EQ(stop.code, 0) << stop.output;
  EXPECT_NE(stop.output.find("stopped head (pid " + std::to_string(head.pid()) + ")"),
            std::string::npos)
      << stop.output;
  ASSERT_TRUE(head.wait(20s)) << head.output();
  EXPECT_EQ(head.exit_code(), 0) << head.output();
}

TEST_F(CliTest, ATokenGivenAsAFlagLeavesTheProcessListAndTheBannerPointsElsewhere) {
  const std::string token = "f00dfeedf00dfeedf00dfeedf00dfeed";
  ASSERT_NO_FATAL_FAILURE(start_head({"--token", token}));
  const int head = pid_of("head");
  ASSERT_TRUE(process_alive(head));
  const std::string arguments = command_line_of(head);
  EXPECT_EQ(arguments.find(token), std::string::npos) << arguments;
  EXPECT_NE(arguments.find("--token"), std::string::npos) << arguments;

  const Outcome worker =
      cli({"--token=" + token, "cluster", "start", "--worker",
           "--head-address=" + head_field("cluster"), "--node-id", "w1", "--num-cpus", "1"});
  ASSERT_EQ(worker.code, 0) << worker.output;
  EXPECT_EQ(command_line_of(pid_of("worker-w1")).find(token), std::string::npos);

  // The head uses the token it was given: it is in the token file for clients.
  std::ifstream file(state_dir_ + "/token");
  std::string stored;
  file >> stored;
  EXPECT_EQ(stored, token);
  const Outcome status = cli({"cluster", "status"});
  EXPECT_NE(status.output.find("2 nodes (2 alive)"), std::string::npos) << status.output;
}

TEST_F(CliTest, TheHeadsBannerRecommendsTheTokenFileOrSageTokenNotTheFlag) {
  const Outcome head = cli({"cluster", "start", "--head", "--port", "0", "--jobmanager-port", "0",
                            "--dashboard-port", "0", "--num-cpus", "0"});
  ASSERT_EQ(head.code, 0) << head.output;
  EXPECT_NE(head.output.find("token file: " + state_dir_ + "/token (mode 0600"), std::string::npos)
      << head.output;
  EXPECT_NE(head.output.find("SAGE_TOKEN"), std::string::npos) << head.output;
  EXPECT_EQ(head.output.find("--token"), std::string::npos) << head.output;
  const Outcome help = cli({"--help"});
  EXPECT_NE(help.output.find("prefer those"), std::string::npos) << help.output;
}

TEST_F(CliTest, UserMetricsOfAJobOnAClusterReachItsResultAndJobStatus) {
  ASSERT_NO_FATAL_FAILURE(start_head());
  const Outcome run = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "metrics"});
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_NE(run.output.find("seen 100, 2 gauges, values count 100 sum 5050 max 100"),
            std::string::npos)
      << run.output;
  const std::string job_id = job_id_in(run.output);
  ASSERT_FALSE(job_id.empty()) << run.output;

  // The table: per operator, counters summed and histograms merged; gauges per instance.
  const Outcome table = cli({"job", "status", job_id});
  ASSERT_EQ(table.code, 0) << table.output;
  EXPECT_TRUE(std::regex_search(table.output, std::regex(R"(measured\s+seen\s+counter\s+100\n)")))
      << table.output;
  EXPECT_TRUE(std::regex_search(
      table.output,
      std::regex(R"(measured\s+value\s+histogram\s+count 100, mean 50.5, p50 \S+, p90 \S+, )"
                 R"(p99 \S+, max 100\n)")))
      << table.output;
  EXPECT_TRUE(
      std::regex_search(table.output, std::regex(R"(measured\[0/2\]\s+last\s+gauge\s+\d+\n)")))
      << table.output;
  EXPECT_TRUE(
      std::regex_search(table.output, std::regex(R"(measured\[1/2\]\s+last\s+gauge\s+\d+\n)")))
      << table.output;

  // JSON: each instance's own metrics.
  std::int64_t seen = 0;
  std::uint64_t values = 0;
  const nlohmann::json job = job_json(job_id);
  for (const auto& instance : job.at("instances")) {
    if (instance.at("operator_name") != "measured") continue;
    seen += std::stoll(instance.at("counters").at("seen").get<std::string>());
    EXPECT_TRUE(instance.at("gauges").contains("last")) << instance.dump();
    const auto& histogram = instance.at("histograms").at("value");
    values += std::stoull(histogram.at("count").get<std::string>());
    EXPECT_FALSE(histogram.at("buckets").empty()) << instance.dump();
  }
  EXPECT_EQ(seen, 100);
  EXPECT_EQ(values, 100u);
}

TEST_F(CliTest, SubmittingAProgramThatSubmitsNoJobIsAnError) {
  const std::vector<std::string> token = {"SAGE_TOKEN=any"};  // nothing is contacted
  const Outcome true_program = cli({"job", "submit", "/bin/true"}, token);
  EXPECT_EQ(true_program.code, 1) << true_program.output;
  EXPECT_NE(true_program.output.find("sage: error: /bin/true ended (exit code 0) without "
                                     "submitting a job; a program run by `sage job submit` "
                                     "submits its dataflow with sage::RemoteEnvironment"),
            std::string::npos)
      << true_program.output;

  const Outcome failing = cli({"job", "submit", "/bin/sh", "-c", "exit 3"}, token);
  EXPECT_EQ(failing.code, 3) << failing.output;
  EXPECT_NE(failing.output.find("/bin/sh ended (exit code 3) without submitting a job"),
            std::string::npos)
      << failing.output;

  const Outcome missing = cli({"job", "submit", "./no-such-program"}, token);
  EXPECT_EQ(missing.code, 1) << missing.output;
  EXPECT_NE(missing.output.find("cannot run './no-such-program'"), std::string::npos)
      << missing.output;
}

TEST_F(CliTest, SubmitPassesSignalsOnToTheProgram) {
  ChildProcess submit(
      {SAGE_CLI_BINARY, "job", "submit", "/bin/sh", "-c", "echo ready; exec sleep 600"},
      {"SAGE_TOKEN=any", "SAGE_STATE_DIR=" + state_dir_});
  ASSERT_TRUE(submit.wait_for_output("ready", 20s)) << submit.output();
  ASSERT_EQ(kill(submit.pid(), SIGTERM), 0);
  ASSERT_TRUE(submit.wait(20s)) << "the program did not get the SIGTERM:\n" << submit.output();
  EXPECT_EQ(submit.exit_code(), 128 + SIGTERM) << submit.output();
  EXPECT_NE(submit.output().find("ended (signal Terminated) without submitting a job"),
            std::string::npos)
      << submit.output();
}

// Ctrl-C on `sage job submit` ends the program, and the job it submitted goes
// with it rather than run on (here: start once a node has room) unwatched.
TEST_F(CliTest, AnInterruptedProgramTakesItsJobWithIt) {
  head_cpus_ = "0";  // no room: the job waits
  ASSERT_NO_FATAL_FAILURE(start_head());
  ChildProcess waiting({SAGE_CLI_BINARY, "job", "submit", SAGE_CLUSTER_JOB_BINARY, "pair"}, env());
  ASSERT_TRUE(waiting.wait_for_output("is waiting", 20s)) << waiting.output();
  const std::string job_id = job_id_in(waiting.output());
  ASSERT_EQ(kill(waiting.pid(), SIGINT), 0);
  ASSERT_TRUE(waiting.wait(20s)) << waiting.output();
  EXPECT_EQ(waiting.exit_code(), 128 + SIGINT) << waiting.output();
  EXPECT_NE(waiting.output().find("sage: stopped job " + job_id + ": " + SAGE_CLUSTER_JOB_BINARY +
                                  " ended by signal Interrupt"),
            std::string::npos)
      << waiting.output();
  EXPECT_EQ(waiting.output().find("without submitting a job"), std::string::npos)
      << waiting.output();
  EXPECT_EQ(job_state(job_id), "STOPPED");
}

// A program that tried to submit and was refused has said why: no second
// error claims it never submitted.
TEST_F(CliTest, ARefusedSubmitIsTheOnlyError) {
  ASSERT_NO_FATAL_FAILURE(start_head());
  const Outcome refused = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "pair"},
                              {"SAGE_TOKEN=f00dfeedf00dfeedf00dfeedf00dfeed"});
  EXPECT_EQ(refused.code, 1) << refused.output;
  EXPECT_NE(refused.output.find("wrong cluster token"), std::string::npos) << refused.output;
  EXPECT_EQ(refused.output.find("without submitting a job"), std::string::npos) << refused.output;
}

TEST_F(CliTest, AProgramWaitingForResourcesSaysWhyAndWhenItStarts) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  const std::string holder = submit_endless("reserving");  // 2 CPUs on each of the 3 nodes
  ASSERT_TRUE(eventually([&] { return job_state(holder) == "RUNNING"; }, 20s));

  ChildProcess waiting({SAGE_CLI_BINARY, "job", "submit", SAGE_CLUSTER_JOB_BINARY, "pair"}, env());
  ASSERT_TRUE(waiting.wait_for_output("is waiting: waiting for 1 CPUs", 20s)) << waiting.output();
  const std::string job_id = job_id_in(waiting.output());
  EXPECT_EQ(job_state(job_id), "PENDING");
  EXPECT_EQ(waiting.output().find("started"), std::string::npos) << waiting.output();

  ASSERT_EQ(cli({"job", "stop", holder}).code, 0);
  ASSERT_TRUE(waiting.wait(60s)) << waiting.output();
  EXPECT_EQ(waiting.exit_code(), 0) << waiting.output();
  const std::string& output = waiting.output();
  const auto started = output.find("job " + job_id + " started");
  EXPECT_NE(started, std::string::npos) << output;
  EXPECT_LT(output.find("job " + job_id + " is waiting"), started) << output;
  EXPECT_NE(output.find("FINISHED, 3 records at the sinks"), std::string::npos) << output;
}

TEST_F(CliTest, AProgramRunDirectlyFindsTheHeadOfItsStateDirectoryOnAnyPort) {
  // SAGE_ADDRESS empty: the program must find the head by itself.
  const std::vector<std::string> no_address = {"SAGE_ADDRESS="};
  const Outcome nothing = run({SAGE_CLUSTER_JOB_BINARY, "pair"}, no_address);
  EXPECT_EQ(nothing.code, 1) << nothing.output;
  EXPECT_NE(nothing.output.find("no sage head answers at 127.0.0.1:19001 (SAGE_ADDRESS is unset "
                                "and " +
                                state_dir_ + "/head.json names no head)"),
            std::string::npos)
      << nothing.output;

  ASSERT_NO_FATAL_FAILURE(start_head());  // --port 0 --jobmanager-port 0
  const Outcome direct = run({SAGE_CLUSTER_JOB_BINARY, "pair"}, no_address);
  EXPECT_EQ(direct.code, 0) << direct.output;
  EXPECT_NE(direct.output.find("FINISHED, 3 records at the sinks"), std::string::npos)
      << direct.output;
}

TEST_F(CliTest, BadFlagValuesAreRefusedWithTheFix) {
  const auto expect_refused = [&](const std::vector<std::string>& args, int code,
                                  const std::string& message) {
    const Outcome outcome = cli(args);
    EXPECT_EQ(outcome.code, code) << outcome.output;
    EXPECT_NE(outcome.output.find(message), std::string::npos) << outcome.output;
    EXPECT_FALSE(std::filesystem::exists(state_dir_ + "/head.json"));
    EXPECT_FALSE(std::filesystem::exists(state_dir_ + "/logs")) << "a refused start left a trace";
  };
  for (const std::string address :
       {"nonsense", "127.0.0.1:", "127.0.0.1:12abc", "127.0.0.1:70000", ":10001"}) {
    expect_refused({"cluster", "start", "--worker", "--head-address=" + address}, 2,
                   "--head-address '" + address +
                       "' is not <host>:<port>; e.g. --head-address=192.168.1.10:10001");
  }
  expect_refused({"cluster", "start", "--worker", "--head-address=no-such-host.invalid:10001"}, 2,
                 "cannot resolve head address 'no-such-host.invalid'");
  expect_refused({"cluster", "start", "--head", "--memory", "1e30TB"}, 2,
                 "--memory '1e30TB' is not an amount of bytes (16 EiB or more); write a number "
                 "with a unit, e.g. 512MB or 16GB");
  expect_refused({"cluster", "start", "--head", "--memory", "0.5"}, 2,
                 "--memory '0.5' is not an amount of bytes (less than one byte)");
  expect_refused({"cluster", "start", "--head", "--memory", "1.5B"}, 2,
                 "--memory '1.5B' is not an amount of bytes (not a whole number of bytes)");
  expect_refused({"cluster", "start", "--head", "--num-cpus", "-1"}, 2,
                 "--num-cpus: must be a number of 0 or more, got '-1'");
  expect_refused({"cluster", "start", "--head", "--num-cpus", "inf"}, 2,
                 "--num-cpus: must be a number of 0 or more, got 'inf'");
  expect_refused({"cluster", "start", "--head", "--num-gpus", "-2"}, 2,
                 "--num-gpus: must be a number of 0 or more, got '-2'");
  expect_refused({"cluster", "start", "--head", "--num-gpus", "100000"}, 2,
                 "--num-gpus: at most 1024, got '100000'");
  expect_refused({"cluster", "start", "--head", "--num-cpus", "1e9"}, 2,
                 "--num-cpus: at most 1000000, got '1e9'");
  EXPECT_EQ(cli({"cluster", "start", "--head", "--num-cpus", "-1"}).output.find("e+308"),
            std::string::npos);
  // The node id names the pid and log files: checked before they are made.
  expect_refused(
      {"cluster", "start", "--worker", "--head-address=127.0.0.1:10001", "--node-id", "a/b"}, 2,
      "--node-id 'a/b' has a character other than letters, digits, '.', '_' and '-'");
  expect_refused({"--token", "abc def", "job", "list"}, 2,
                 "--token has the byte 0x20 at position 3; a cluster token is printable ASCII");
  expect_refused({"--address", "127.0.0.1:99999", "job", "list"}, 2,
                 "--address '127.0.0.1:99999' is not <host>:<port> of a head's JobManager");
  const Outcome long_id = cli({"job", "status", std::string(100'000, 'a')});
  EXPECT_EQ(long_id.code, 2) << long_id.output.substr(0, 300);
  EXPECT_NE(long_id.output.find("'aaaaaaaaaaaaaaaaaaaaaaaa...' (100000 bytes) is not a job id"),
            std::string::npos)
      << long_id.output.substr(0, 300);
  EXPECT_LT(long_id.output.size(), 1000u) << "the error repeats the argument";
  // A token that cannot travel in a call is one line, not an abort inside gRPC.
  ASSERT_NO_FATAL_FAILURE(start_head());
  const Outcome control = cli({"job", "list"}, {"SAGE_TOKEN=abc\ndef"});
  EXPECT_EQ(control.code, 1) << control.output;
  EXPECT_NE(control.output.find("SAGE_TOKEN has the byte 0x0a at position 3"), std::string::npos)
      << control.output;
}

}  // namespace
}  // namespace sage::testing
