// An in-process Head driven through real gRPC: clients and fake workers
// that send what a buggy or hostile peer with the token could send.
#include "cluster/head.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cluster/head_snapshot_storage.hpp"
#include "cluster/job_store.hpp"
#include "cluster/program_store.hpp"
#include "net/rpc.hpp"
#include "sage.grpc.pb.h"
#include "support/temp_dir.hpp"

namespace sage::cluster {
namespace {

using namespace std::chrono_literals;
using grpc::StatusCode;

constexpr const char* kToken = "head-test-token";
constexpr auto kCallDeadline = 20s;  // a call that hangs fails the test instead

std::unique_ptr<grpc::ClientContext> context() {
  auto c = net::make_context(kToken);
  c->set_deadline(std::chrono::system_clock::now() + kCallDeadline);
  return c;
}

// A worker as the head sees it: its command stream, and heartbeats while it lives.
class FakeWorker {
 public:
  FakeWorker(rpc::ClusterService::Stub& stub, const rpc::JoinRequest& join)
      : stub_(stub), node_id_(join.node_id()), context_(context()) {
    stream_ = stub_.Join(context_.get(), join);
  }
  ~FakeWorker() {
    beating_ = false;
    if (heartbeat_.joinable()) heartbeat_.join();
    if (!finished_) {
      context_->TryCancel();
      stream_->Finish();
    }
  }

  // The welcome, then heartbeats so that the head keeps the node alive.
  void expect_welcome() {
    ASSERT_TRUE(next().has_welcome());
    heartbeat_ = std::thread([this] {
      while (beating_) {
        rpc::NodeRef ref;
        ref.set_node_id(node_id_);
        rpc::Empty reply;
        stub_.Heartbeat(context().get(), ref, &reply);
        std::this_thread::sleep_for(kHeartbeatInterval);
      }
    });
  }
  rpc::WorkerCommand next() {
    rpc::WorkerCommand command;
    EXPECT_TRUE(stream_->Read(&command)) << "node " << node_id_ << " got no command";
    return command;
  }
  // The stream's end, for a refused join.
  grpc::Status refusal() {
    rpc::WorkerCommand command;
    EXPECT_FALSE(stream_->Read(&command)) << "a refused join got a command";
    finished_ = true;
    return stream_->Finish();
  }

 private:
  rpc::ClusterService::Stub& stub_;
  std::string node_id_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<rpc::WorkerCommand>> stream_;
  bool finished_ = false;
  std::atomic<bool> beating_{true};
  std::thread heartbeat_;
};

rpc::JoinRequest join_request(const std::string& node_id) {
  rpc::JoinRequest join;
  join.set_node_id(node_id);
  join.set_host("127.0.0.1");
  join.mutable_resources()->set_num_cpus(2);
  join.mutable_resources()->set_memory_bytes(std::uint64_t{1} << 30);
  return join;
}

class HeadTest : public ::testing::Test {
 protected:
  void SetUp() override { start(); }

  void start(std::uint64_t max_program_bytes = HeadOptions{}.max_program_bytes) {
    HeadOptions options;
    options.cluster_port = 0;
    options.jobmanager_port = 0;
    options.dashboard_port = 0;
    options.state_dir = dir_.path();
    options.token = kToken;
    options.max_instances_per_job = 64;
    options.max_program_bytes = max_program_bytes;
    head_ = std::make_unique<Head>(options);
    jobs_ = rpc::JobManager::NewStub(
        net::make_channel("127.0.0.1:" + std::to_string(head_->jobmanager_port())));
    cluster_ = rpc::ClusterService::NewStub(
        net::make_channel("127.0.0.1:" + std::to_string(head_->cluster_port())));
  }

  // Uploads `bytes` as a program; returns its hash.
  std::string upload(const std::string& bytes, grpc::Status* status = nullptr) {
    const std::string path = dir_.file("program");
    std::ofstream(path, std::ios::binary) << bytes;
    const std::string sha256 = sha256_of_file(path);
    auto c = context();
    rpc::ProgramRef stored;
    auto writer = jobs_->UploadProgram(c.get(), &stored);
    rpc::ProgramChunk chunk;
    chunk.set_sha256(sha256);
    for (std::size_t at = 0; at < bytes.size(); at += net::kChunkBytes) {
      chunk.set_data(bytes.substr(at, net::kChunkBytes));
      if (!writer->Write(chunk)) break;
      chunk.clear_sha256();
    }
    writer->WritesDone();
    const grpc::Status finished = writer->Finish();
    if (status != nullptr) {
      *status = finished;
    } else {
      EXPECT_TRUE(finished.ok()) << finished.error_message();
    }
    return sha256;
  }

  rpc::SubmitRequest job_request(const std::string& sha256, int parallelism) {
    rpc::SubmitRequest request;
    request.set_name("test job");
    request.set_program_sha256(sha256);
    request.set_fingerprint("0123456789abcdef");
    auto* chain = request.add_chains();
    chain->set_parallelism(parallelism);
    chain->add_operators("map");
    return request;
  }

  grpc::Status submit(const rpc::SubmitRequest& request, std::string* job_id = nullptr) {
    rpc::SubmitReply reply;
    const auto status = jobs_->SubmitJob(context().get(), request, &reply);
    if (job_id != nullptr) *job_id = reply.job_id();
    return status;
  }

  int job_count() {
    rpc::JobList list;
    EXPECT_TRUE(jobs_->ListJobs(context().get(), rpc::Empty(), &list).ok());
    return list.jobs_size();
  }

  rpc::ClusterInfo cluster_status() {
    rpc::ClusterInfo info;
    EXPECT_TRUE(jobs_->ClusterStatus(context().get(), rpc::Empty(), &info).ok());
    return info;
  }

  rpc::JobInfo job(const std::string& id) {
    rpc::JobInfo info;
    const auto status = jobs_->GetJob(
        context().get(),
        [&] {
          rpc::JobRef ref;
          ref.set_job_id(id);
          return ref;
        }(),
        &info);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return info;
  }

  // Every output line of the job stored so far.
  std::string output(const std::string& id) {
    rpc::WatchRequest request;
    request.set_job_id(id);
    auto c = context();
    auto reader = jobs_->WatchJob(c.get(), request);
    rpc::JobEvent event;
    std::string lines;
    while (reader->Read(&event)) {
      if (event.has_output_line()) lines += event.output_line() + "\n";
    }
    reader->Finish();
    return lines;
  }

  // A job of two processes, one on each of two fake workers, started.
  std::string start_two_process_job(FakeWorker& w1, FakeWorker& w2,
                                    const rpc::CheckpointSettings& checkpoints = {}) {
    std::string id;
    auto request = job_request(upload("a program"), 2);
    *request.mutable_checkpoints() = checkpoints;
    EXPECT_TRUE(submit(request, &id).ok());
    for (FakeWorker* worker : {&w1, &w2}) {
      const rpc::WorkerCommand command = worker->next();
      EXPECT_TRUE(command.has_prepare());
      rpc::PreparedReport prepared;
      prepared.set_node_id(worker == &w1 ? "w1" : "w2");
      prepared.set_job_id(id);
      prepared.set_process_index(command.prepare().process_index());
      prepared.set_data_address("127.0.0.1:9");
      rpc::Empty reply;
      EXPECT_TRUE(cluster_->ReportPrepared(context().get(), prepared, &reply).ok());
    }
    EXPECT_TRUE(w1.next().has_start());
    EXPECT_TRUE(w2.next().has_start());
    return id;
  }

  void report_exit(const std::string& job_id, int process, const std::string& error,
                   bool consequence) {
    rpc::ExitReport report;
    report.set_job_id(job_id);
    report.set_process_index(process);
    report.set_exit_code(1);
    report.set_error(error);
    report.set_consequence(consequence);
    rpc::Empty reply;
    const auto status = cluster_->ReportExit(context().get(), report, &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }

  testing::TempDir dir_;
  std::unique_ptr<Head> head_;
  std::unique_ptr<rpc::JobManager::Stub> jobs_;
  std::unique_ptr<rpc::ClusterService::Stub> cluster_;
};

void expect_invalid(const grpc::Status& status, const std::string& says) {
  EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_NE(status.error_message().find(says), std::string::npos) << status.error_message();
}

TEST_F(HeadTest, ASubmitWithBadValuesIsRefusedAndLeavesNoJob) {
  const std::string sha256 = upload("a program");
  // Parallelism 0 ran forever on no node; 2^31-1 held the head's lock for
  // seconds and grew it past 1 GB; negative CPUs broke a node's accounting.
  expect_invalid(submit(job_request(sha256, 0)), "chains[0].parallelism is 0; it must be 1 to 64");
  expect_invalid(submit(job_request(sha256, 2'147'483'647)), "chains[0].parallelism is 2147483647");
  auto negative = job_request(sha256, 1);
  negative.mutable_chains(0)->mutable_resources()->set_num_cpus(-4);
  negative.mutable_chains(0)->set_reserves(true);
  expect_invalid(submit(negative), "chains[0].resources.num_cpus is -4");
  auto wide = job_request(sha256, 40);
  *wide.add_chains() = wide.chains(0);
  expect_invalid(submit(wide), "the job has 80 instances in all");
  EXPECT_EQ(job_count(), 0);
  std::string id;
  ASSERT_TRUE(submit(job_request(sha256, 2), &id).ok());
  EXPECT_EQ(job(id).state(), rpc::JobInfo::PENDING);
}

TEST_F(HeadTest, AJoinWithBadValuesIsRefusedAndLeavesNoNode) {
  auto negative_gpus = join_request("w1");
  negative_gpus.mutable_resources()->set_num_gpus(-1);  // hung, and left a ghost node
  expect_invalid(FakeWorker(*cluster_, negative_gpus).refusal(), "resources.num_gpus is -1");
  auto bad_name = join_request("w 1");
  expect_invalid(FakeWorker(*cluster_, bad_name).refusal(), "node_id 'w 1'");
  EXPECT_EQ(cluster_status().nodes_size(), 0);
  // The id is free: the refused joins left nothing behind.
  FakeWorker worker(*cluster_, join_request("w1"));
  ASSERT_NO_FATAL_FAILURE(worker.expect_welcome());
  EXPECT_EQ(cluster_status().nodes_size(), 1);
}

TEST_F(HeadTest, ReportsAndReadsWithBadValuesAreRefused) {
  rpc::Empty reply;
  rpc::ExitReport exit;
  exit.set_job_id("job-1");
  exit.set_process_index(-1);
  expect_invalid(cluster_->ReportExit(context().get(), exit, &reply), "process_index is -1");
  rpc::NodeRef node;
  expect_invalid(cluster_->Heartbeat(context().get(), node, &reply), "node_id is empty");
  rpc::WatchRequest watch;
  watch.set_job_id("job-1");
  watch.set_from_line(-5);
  auto c = context();
  auto reader = jobs_->WatchJob(c.get(), watch);
  rpc::JobEvent event;
  EXPECT_FALSE(reader->Read(&event));
  expect_invalid(reader->Finish(), "from_line is -5");
  rpc::PreparedReport prepared;  // for a job and process that do not exist
  prepared.set_node_id("w1");
  prepared.set_job_id("job-1");
  prepared.set_data_address("127.0.0.1");
  expect_invalid(cluster_->ReportPrepared(context().get(), prepared, &reply),
                 "data_address '127.0.0.1' is not host:port");
  rpc::ProgramRef program;
  program.set_sha256("../jobs.db");
  rpc::HasProgramReply has;
  expect_invalid(jobs_->HasProgram(context().get(), program, &has), "sha256 '../jobs.db'");
}

TEST_F(HeadTest, AnUploadOverTheLimitIsRefusedAndLeavesNoFile) {
  head_.reset();
  start(/*max_program_bytes=*/3 << 20);
  grpc::Status status;
  upload(std::string((3 << 20) + 1, 'x'), &status);
  EXPECT_EQ(status.error_code(), StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_NE(status.error_message().find("--max-program-size"), std::string::npos)
      << status.error_message();
  EXPECT_NE(status.error_message().find("3.0 MiB"), std::string::npos) << status.error_message();
  EXPECT_TRUE(std::filesystem::is_empty(dir_.file("programs")))
      << "the partial upload was left in " << dir_.file("programs");
  upload(std::string(3 << 20, 'x'));  // at the limit
}

// A database that refuses the record makes the submit fail, with the cause,
// and leaves no phantom PENDING job behind.
TEST_F(HeadTest, ASubmitTheDatabaseRefusesLeavesNoJob) {
  const std::string sha256 = upload("a program");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir_.file("jobs.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  const grpc::Status status = submit(job_request(sha256, 1));
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  EXPECT_EQ(status.error_code(), StatusCode::INTERNAL) << status.error_message();
  EXPECT_NE(status.error_message().find("SubmitJob failed on the head: job database"),
            std::string::npos)
      << status.error_message();
  EXPECT_EQ(job_count(), 0) << "a refused submit left a job";
}

// Jobs recorded by a head from before states were typed (the state as text,
// also inside the stored JobInfo) load in the state their column names; one
// that was running then is FAILED.
TEST_F(HeadTest, JobsOfAnOlderHeadLoadInTheirStates) {
  head_.reset();
  {
    JobStore store(dir_.file("jobs.db"));
    for (const auto& [id, state] : {std::pair("job-ended", rpc::JobInfo::FINISHED),
                                    std::pair("job-running", rpc::JobInfo::RUNNING)}) {
      rpc::JobInfo info;
      info.set_job_id(id);
      info.set_name("old job");
      JobRecord record;
      record.id = id;
      record.name = info.name();
      record.state = state;
      record.args = {"--input", "data.txt"};
      const std::string text = rpc::JobInfo::State_Name(state);
      // Field 3, length-delimited: how an older head stored the state.
      record.statistics = info.SerializeAsString() + '\x1a' + static_cast<char>(text.size()) + text;
      store.put(record);
    }
  }
  start();
  EXPECT_EQ(job("job-ended").state(), rpc::JobInfo::FINISHED);
  const rpc::JobInfo running = job("job-running");
  EXPECT_EQ(running.state(), rpc::JobInfo::FAILED);
  EXPECT_EQ(running.error(), "the head restarted while the job ran");
  EXPECT_EQ(running.name(), "old job");
  head_.reset();
  // Failing the running job saved it again: with its arguments, not without.
  JobStore store(dir_.file("jobs.db"));
  for (const JobRecord& record : store.list()) {
    EXPECT_EQ(record.args, (std::vector<std::string>{"--input", "data.txt"})) << record.id;
  }
}

// A peer's broken connection reported first does not hide the operator's
// exception reported after it: the cause is the job's error.
TEST_F(HeadTest, ACauseReplacesAConsequenceReportedBeforeIt) {
  FakeWorker w1(*cluster_, join_request("w1")), w2(*cluster_, join_request("w2"));
  ASSERT_NO_FATAL_FAILURE(w1.expect_welcome());
  ASSERT_NO_FATAL_FAILURE(w2.expect_welcome());
  const std::string id = start_two_process_job(w1, w2);
  rpc::PreparedReport stranger;  // a report for a process of another node
  stranger.set_node_id("w2");
  stranger.set_job_id(id);
  stranger.set_process_index(0);
  stranger.set_data_address("127.0.0.1:9");
  rpc::Empty reply;
  expect_invalid(cluster_->ReportPrepared(context().get(), stranger, &reply),
                 "node 'w2' reported process 0 of job " + id + ", which runs on node 'w1'");
  report_exit(id, 1, "the data-plane connection from process 0 broke", /*consequence=*/true);
  EXPECT_EQ(job(id).state(), rpc::JobInfo::RUNNING)
      << "a consequence settled the job before its cause came";
  report_exit(id, 0, "operator 'map' instance 0/2 on node w1: boom", /*consequence=*/false);
  const rpc::JobInfo info = job(id);
  EXPECT_EQ(info.state(), rpc::JobInfo::FAILED);
  EXPECT_EQ(info.error(), "operator 'map' instance 0/2 on node w1: boom");
  const std::string lines = output(id);
  EXPECT_NE(lines.find("[sage] task process 0 on node 'w1' failed: operator 'map' instance 0/2 "
                       "on node w1: boom"),
            std::string::npos)
      << lines;
}

TEST_F(HeadTest, AConsequenceReportedAfterACauseChangesNothing) {
  FakeWorker w1(*cluster_, join_request("w1")), w2(*cluster_, join_request("w2"));
  ASSERT_NO_FATAL_FAILURE(w1.expect_welcome());
  ASSERT_NO_FATAL_FAILURE(w2.expect_welcome());
  const std::string id = start_two_process_job(w1, w2);
  report_exit(id, 0, "the task process on node 'w1' was killed by signal 9", false);
  EXPECT_EQ(job(id).state(), rpc::JobInfo::FAILED) << "a cause settles the job at once";
  report_exit(id, 1, "the data-plane connection from process 0 broke", true);
  EXPECT_EQ(job(id).error(), "the task process on node 'w1' was killed by signal 9");
}

TEST_F(HeadTest, AConsequenceAloneIsTheErrorOnceEveryProcessEnded) {
  FakeWorker w1(*cluster_, join_request("w1")), w2(*cluster_, join_request("w2"));
  ASSERT_NO_FATAL_FAILURE(w1.expect_welcome());
  ASSERT_NO_FATAL_FAILURE(w2.expect_welcome());
  const std::string id = start_two_process_job(w1, w2);
  report_exit(id, 1, "the data-plane connection from process 0 broke", true);
  report_exit(id, 0, "the data-plane connection from process 1 broke", true);
  EXPECT_EQ(job(id).state(), rpc::JobInfo::FAILED);
  EXPECT_EQ(job(id).error(), "the data-plane connection from process 0 broke");
}

// Checkpoints that do not come due during a test, and 3 restarts after
// `restart_delay_ms` each.
rpc::CheckpointSettings restartable(std::int64_t restart_delay_ms) {
  rpc::CheckpointSettings settings;
  settings.set_interval_ms(60'000);
  settings.set_timeout_ms(60'000);
  settings.set_retained(1);
  settings.set_restart_attempts(3);
  settings.set_restart_delay_ms(restart_delay_ms);
  return settings;
}

// A run of a job with checkpoints whose last process to end is the one that
// failed first-hand (its peer reported only a broken connection before it):
// the job restarts. It was marked FINISHED: the restart settled the run,
// and the exit's own settling then found a job without processes.
TEST_F(HeadTest, AJobRestartsWhenItsCauseIsTheLastExitOfItsRun) {
  FakeWorker w1(*cluster_, join_request("w1")), w2(*cluster_, join_request("w2"));
  ASSERT_NO_FATAL_FAILURE(w1.expect_welcome());
  ASSERT_NO_FATAL_FAILURE(w2.expect_welcome());
  // Restarts after 60 s: PENDING for the length of the test.
  const std::string id = start_two_process_job(w1, w2, restartable(60'000));
  report_exit(id, 1, "the data-plane connection from process 0 broke", /*consequence=*/true);
  report_exit(id, 0, "the task process on node 'w1' exited with code 9", /*consequence=*/false);
  const rpc::JobInfo info = job(id);
  EXPECT_EQ(info.state(), rpc::JobInfo::PENDING) << rpc::JobInfo::State_Name(info.state());
  EXPECT_EQ(info.restarts(), 1);
  EXPECT_NE(info.pending_reason().find("restarting in"), std::string::npos)
      << info.pending_reason();
}

// Reports carry the run (attempt) they are for: a late exit report of the
// first run does not end, fail or restart the second.
TEST_F(HeadTest, AReportOfAnEarlierRunDoesNotTouchTheNextRun) {
  FakeWorker w1(*cluster_, join_request("w1")), w2(*cluster_, join_request("w2"));
  ASSERT_NO_FATAL_FAILURE(w1.expect_welcome());
  ASSERT_NO_FATAL_FAILURE(w2.expect_welcome());
  const std::string id = start_two_process_job(w1, w2, restartable(0));
  report_exit(id, 0, "boom", /*consequence=*/false);
  report_exit(id, 1, "the connection broke", /*consequence=*/true);
  // The second run is placed: each worker is told to prepare its process.
  for (FakeWorker* worker : {&w1, &w2}) {
    rpc::WorkerCommand command;
    do {
      command = worker->next();
    } while (!command.has_prepare() && !::testing::Test::HasFailure());
    EXPECT_EQ(command.prepare().attempt(), 1);
  }
  rpc::ExitReport late;  // of process 0 of the first run (attempt 0)
  late.set_job_id(id);
  late.set_process_index(0);
  late.set_exit_code(1);
  late.set_error("boom, again");
  rpc::Empty reply;
  ASSERT_TRUE(cluster_->ReportExit(context().get(), late, &reply).ok());
  const rpc::JobInfo info = job(id);
  EXPECT_EQ(info.state(), rpc::JobInfo::RUNNING) << rpc::JobInfo::State_Name(info.state());
  EXPECT_EQ(info.restarts(), 1);
}

// Task snapshots stored on the head (no shared file system): a run stores
// only the checkpoints it triggered, for its own tasks, whole or not at all,
// and fetches only the checkpoint it restores.
TEST_F(HeadTest, ARunStoresTheSnapshotsOfItsCheckpointsOnTheHeadAndNothingElse) {
  FakeWorker w1(*cluster_, join_request("w1")), w2(*cluster_, join_request("w2"));
  ASSERT_NO_FATAL_FAILURE(w1.expect_welcome());
  ASSERT_NO_FATAL_FAILURE(w2.expect_welcome());
  rpc::CheckpointSettings settings;
  settings.set_interval_ms(10);
  settings.set_timeout_ms(600'000);  // checkpoint 1 stays in flight
  settings.set_retained(1);
  const std::string id = start_two_process_job(w1, w2, settings);
  // The coordinator's first command to process 0: trigger checkpoint 1.
  auto stream_context = context();
  auto stream = cluster_->Checkpoints(stream_context.get());
  rpc::CheckpointReport hello;
  hello.mutable_hello()->set_job_id(id);
  ASSERT_TRUE(stream->Write(hello));
  rpc::CheckpointCommand trigger;
  ASSERT_TRUE(stream->Read(&trigger));
  ASSERT_EQ(trigger.kind(), rpc::CheckpointCommand::TRIGGER);
  ASSERT_EQ(trigger.checkpoint(), 1u);

  const std::string address = "127.0.0.1:" + std::to_string(head_->cluster_port());
  const auto channel = net::make_channel(address);
  HeadSnapshotStorage storage(channel, address, kToken, id, 0);
  std::string bytes(net::kChunkBytes * 5 / 2, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7 + i / 3);
  storage.write_task_snapshot(1, {0, 1}, bytes);
  const std::string stored = dir_.path() + "/checkpoints/" + id + "/chk-1/task-0-1";
  std::ifstream in(stored, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), bytes) << stored;

  // What the head says to a store or fetch of `storage`'s run.
  const auto refusal = [&](auto&& call) -> std::string {
    try {
      call();
    } catch (const Error& e) {
      return e.what();
    }
    return "(not refused)";
  };
  const auto store = [&](HeadSnapshotStorage&& of, std::uint64_t checkpoint,
                         checkpoint::TaskKey task) {
    return refusal([&] { of.write_task_snapshot(checkpoint, task, "x"); });
  };
  const auto says = [](const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  };
  const auto run = [&](const std::string& token, const std::string& job, int attempt) {
    return HeadSnapshotStorage(channel, address, token, job, attempt);
  };
  EXPECT_PRED2(says, store(run(kToken, id, 0), 7, {0, 0}),
               "run 0 of job " + id + " has not triggered checkpoint 7");
  EXPECT_PRED2(says, store(run(kToken, id, 0), 1, {0, 2}), "has no task 0.2");
  EXPECT_PRED2(says, store(run(kToken, id, 0), 1, {3, 0}), "has no task 3.0");
  EXPECT_PRED2(says, store(run(kToken, id, 1), 1, {0, 0}),
               "job " + id + " has no run 1 with checkpoints now");
  EXPECT_PRED2(says, store(run("wrong", id, 0), 1, {0, 0}), "wrong cluster token");
  EXPECT_PRED2(says, store(run(kToken, "job-../../x", 0), 1, {0, 0}), "has no run 0");
  EXPECT_PRED2(says, refusal([&] {
                 storage.read_task_snapshot(1, {0, 1});
               }),
               "run 0 of job " + id + " restores checkpoint 0, not 1");

  // An upload that ends early, or brings more than it named, stores nothing.
  const auto upload_raw = [&](std::uint64_t total, const std::string& data) {
    auto c = context();
    rpc::Empty reply;
    auto writer = cluster_->StoreSnapshot(c.get(), &reply);
    rpc::SnapshotChunk chunk;
    chunk.mutable_ref()->set_job_id(id);
    chunk.mutable_ref()->set_checkpoint(1);
    chunk.set_total_bytes(total);
    chunk.set_data(data);
    writer->Write(chunk);
    writer->WritesDone();
    return writer->Finish();
  };
  expect_invalid(upload_raw(100, std::string(10, 'a')), "ended after 10 of its 100 bytes");
  expect_invalid(upload_raw(5, std::string(10, 'a')), "more than the 5 bytes");
  EXPECT_EQ(upload_raw(net::kMaxSnapshotBytes + 1, "").error_code(),
            StatusCode::RESOURCE_EXHAUSTED);
  std::vector<std::string> files;
  for (const auto& entry :
       std::filesystem::directory_iterator(dir_.path() + "/checkpoints/" + id + "/chk-1")) {
    files.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(files, std::vector<std::string>{"task-0-1"}) << "a refused upload left a file";
  stream_context->TryCancel();
  stream->Finish();
}

}  // namespace
}  // namespace sage::cluster
