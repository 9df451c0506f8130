// The JobManager client against an in-process fake JobManager over real
// gRPC: the token it presents, the errors it raises, its deadlines, the
// program upload and the watch.
#include "cluster/jobmanager_client.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "cluster/cluster_config.hpp"
#include "cluster/program_store.hpp"
#include "net/rpc.hpp"
#include "sage/error.hpp"
#include "support/temp_dir.hpp"

namespace sage::cluster {
namespace {

using namespace std::chrono_literals;

constexpr const char* kToken = "client-test-token";

// Sets (or, with nullopt, unsets) an environment variable for one test.
class ScopedVariable {
 public:
  ScopedVariable(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* before = std::getenv(name)) before_ = before;
    if (value) {
      setenv(name, value->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedVariable() {
    if (before_) {
      setenv(name_, before_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  ScopedVariable(const ScopedVariable&) = delete;
  ScopedVariable& operator=(const ScopedVariable&) = delete;

 private:
  const char* name_;
  std::optional<std::string> before_;
};

// Answers as a head would, for the calls the client makes; refuses calls
// without kToken.
class FakeJobManager final : public rpc::JobManager::Service {
 public:
  grpc::Status GetJob(grpc::ServerContext* context, const rpc::JobRef* ref,
                      rpc::JobInfo* reply) override {
    if (auto refused = net::check_token(*context, kToken); !refused.ok()) return refused;
    std::this_thread::sleep_for(answer_delay);
    if (ref->job_id() != "j1") {
      return {grpc::StatusCode::NOT_FOUND, "no job '" + ref->job_id() + "'"};
    }
    reply->set_job_id("j1");
    reply->set_state(rpc::JobInfo::RUNNING);
    return grpc::Status::OK;
  }

  grpc::Status ListJobs(grpc::ServerContext* context, const rpc::Empty*, rpc::JobList*) override {
    return net::check_token(*context, kToken);
  }

  grpc::Status HasProgram(grpc::ServerContext* context, const rpc::ProgramRef*,
                          rpc::HasProgramReply* reply) override {
    if (auto refused = net::check_token(*context, kToken); !refused.ok()) return refused;
    reply->set_present(has_program);
    return grpc::Status::OK;
  }

  grpc::Status UploadProgram(grpc::ServerContext* context,
                             grpc::ServerReader<rpc::ProgramChunk>* reader,
                             rpc::ProgramRef* reply) override {
    if (auto refused = net::check_token(*context, kToken); !refused.ok()) return refused;
    std::lock_guard lock(mutex);
    ++uploads;
    rpc::ProgramChunk chunk;
    std::size_t received = 0;
    for (bool first = true; reader->Read(&chunk); first = false) {
      if (first) uploaded_sha256 = chunk.sha256();
      received += chunk.data().size();
      if (received > max_upload_bytes) return {grpc::StatusCode::RESOURCE_EXHAUSTED, "too large"};
      uploaded += chunk.data();
    }
    reply->set_sha256(uploaded_sha256);
    return grpc::Status::OK;
  }

  grpc::Status SubmitJob(grpc::ServerContext* context, const rpc::SubmitRequest* request,
                         rpc::SubmitReply* reply) override {
    if (auto refused = net::check_token(*context, kToken); !refused.ok()) return refused;
    std::lock_guard lock(mutex);
    submitted = *request;
    reply->set_job_id("j1");
    return grpc::Status::OK;
  }

  grpc::Status WatchJob(grpc::ServerContext* context, const rpc::WatchRequest* request,
                        grpc::ServerWriter<rpc::JobEvent>* writer) override {
    if (auto refused = net::check_token(*context, kToken); !refused.ok()) return refused;
    for (const char* line : {"first line", "second line"}) {
      rpc::JobEvent event;
      event.set_output_line(line);
      writer->Write(event);
    }
    if (request->follow()) {
      rpc::JobEvent event;
      event.mutable_state()->set_job_id(request->job_id());
      event.mutable_state()->set_state(rpc::JobInfo::FINISHED);
      writer->Write(event);
    }
    return grpc::Status::OK;
  }

  std::chrono::milliseconds answer_delay{0};
  bool has_program = false;
  std::size_t max_upload_bytes = SIZE_MAX;  // larger uploads are refused
  std::mutex mutex;
  int uploads = 0;
  std::string uploaded;
  std::string uploaded_sha256;
  rpc::SubmitRequest submitted;
};

class JobManagerClientTest : public ::testing::Test {
 protected:
  JobManagerClientTest() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    net::configure_server(builder);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~JobManagerClientTest() override { server_->Shutdown(std::chrono::system_clock::now()); }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  JobManagerClient client(std::string token = kToken,
                          std::chrono::milliseconds call_timeout = 10s) const {
    return JobManagerClient({.address = address(),
                             .token = std::move(token),
                             .state_dir = state_dir_.path(),
                             .call_timeout = call_timeout});
  }

  // The message of the sage::Error `call` throws; fails the test if none.
  template <class Call>
  static std::string error_of(Call call) {
    try {
      call();
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "no sage::Error";
    return "";
  }

  const ScopedVariable no_token_variable_{"SAGE_TOKEN", std::nullopt};
  testing::TempDir state_dir_;
  FakeJobManager service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(JobManagerClientTest, AMissingTokenIsTheErrorWhenTheHeadRefusesTheCall) {
  const std::string error = error_of([&] { client("").list_jobs(); });
  EXPECT_EQ(error.find("cannot list jobs at " + address() + ": no cluster token"), 0u) << error;
  EXPECT_NE(error.find(token_path(state_dir_.path())), std::string::npos) << error;
}

TEST_F(JobManagerClientTest, WithoutATokenItPresentsTheTokenFileOfTheStateDirectory) {
  write_token(token_path(state_dir_.path()), kToken);
  EXPECT_EQ(client("").job("j1").state(), rpc::JobInfo::RUNNING);
}

TEST_F(JobManagerClientTest, AFailedCallSaysWhatFailedWhereAndWhy) {
  EXPECT_EQ(error_of([&] { client().job("j9"); }),
            "cannot get job j9 at " + address() + ": no job 'j9'");
  EXPECT_NE(error_of([&] { client("wrong").stop_job("j1"); }).find("cannot stop job j1 at "),
            std::string::npos);
}

TEST_F(JobManagerClientTest, ErrorsNameTheAddressAsTheCallerDescribesIt) {
  const JobManagerClient described({.address = address(),
                                    .where = address() + " (from SAGE_ADDRESS)",
                                    .token = kToken,
                                    .state_dir = state_dir_.path()});
  EXPECT_EQ(error_of([&] { described.job("j9"); }),
            "cannot get job j9 at " + address() + " (from SAGE_ADDRESS): no job 'j9'");
}

TEST_F(JobManagerClientTest, WhenNoHeadAnswersTheErrorSaysHowToStartOne) {
  server_->Shutdown(std::chrono::system_clock::now());
  const std::string error = error_of([&] { client().job("j1"); });
  EXPECT_EQ(error.find("cannot get job j1: no sage head answers at " + address() +
                       "; start one with `sage cluster start --head`"),
            0u)
      << error;
}

TEST_F(JobManagerClientTest, ACallThatOutlastsItsTimeoutFails) {
  service_.answer_delay = 1s;
  const auto start = std::chrono::steady_clock::now();
  const std::string error = error_of([&] { client(kToken, 100ms).job("j1"); });
  EXPECT_LT(std::chrono::steady_clock::now() - start, 800ms);
  EXPECT_EQ(error.find("cannot get job j1 at " + address() + ": "), 0u) << error;
}

TEST_F(JobManagerClientTest, SubmitUploadsTheProgramInChunksWhenTheHeadLacksIt) {
  const std::string program = state_dir_.file("program");
  std::string content(net::kChunkBytes * 5 / 2, '\0');
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 7);
  std::ofstream(program, std::ios::binary) << content;

  rpc::SubmitRequest request;
  request.set_name("job");
  EXPECT_EQ(client().submit_job(request, program), "j1");
  EXPECT_EQ(service_.uploads, 1);
  EXPECT_EQ(service_.uploaded, content);
  EXPECT_EQ(service_.uploaded_sha256, sha256_of_file(program));
  EXPECT_EQ(service_.submitted.program_sha256(), sha256_of_file(program));
  EXPECT_EQ(service_.submitted.name(), "job");

  service_.has_program = true;
  client().submit_job(request, program);
  EXPECT_EQ(service_.uploads, 1) << "a program the head has is not sent again";
}

// A server without the call (FakeJobManager has no StopJob), as the head's
// cluster port is to a client: the error says which port is which.
TEST_F(JobManagerClientTest, AServerWithoutTheCallIsCalledAnotherPort) {
  const std::string error = error_of([&] { client().stop_job("j1"); });
  EXPECT_EQ(error.find("cannot stop job j1 at " + address() +
                       ": the server there does not serve this call, so it is another port"),
            0u)
      << error;
  EXPECT_NE(error.find("JobManager port (19001 unless --jobmanager-port"), std::string::npos)
      << error;
}

TEST_F(JobManagerClientTest, AnUploadTheHeadRefusesNamesWhatWasUploaded) {
  const std::string program = state_dir_.file("program");
  const std::string bundle = state_dir_.file("bundle");
  std::ofstream(program) << "small";
  std::ofstream(bundle) << std::string(100, 'b');
  service_.max_upload_bytes = 10;
  rpc::SubmitRequest request;
  request.set_name("job");
  EXPECT_EQ(error_of([&] { client().submit_job(request, program, bundle); }),
            "cannot upload the script's bundle at " + address() + ": too large");
  EXPECT_EQ(error_of([&] { client().submit_job(request, bundle); }),
            "cannot upload the program at " + address() + ": too large");
}

TEST_F(JobManagerClientTest, ASubmitTheHeadRefusesNamesTheJob) {
  rpc::SubmitRequest request;
  request.set_name("mine");
  const std::string program = state_dir_.file("program");
  std::ofstream(program) << "x";
  EXPECT_EQ(error_of([&] {
              client("wrong").submit_job(request, program);
            }).find("cannot submit job 'mine' at " + address() + ": "),
            0u);
}

TEST_F(JobManagerClientTest, WatchPassesEachLineAndReturnsTheFinalState) {
  std::vector<std::string> lines;
  const auto collect = [&](const std::string& line) { lines.push_back(line); };
  const auto final_state = client().watch("j1", /*follow=*/true, "lost job j1", collect);
  EXPECT_EQ(lines, (std::vector<std::string>{"first line", "second line"}));
  ASSERT_TRUE(final_state.has_value());
  EXPECT_EQ(final_state->state(), rpc::JobInfo::FINISHED);

  lines.clear();
  EXPECT_FALSE(client().watch("j1", /*follow=*/false, "cannot read the logs of j1", collect));
  EXPECT_EQ(lines.size(), 2u);
  EXPECT_EQ(error_of([&] {
              client("wrong").watch("j1", true, "lost job j1", collect);
            }).find("lost job j1 at " + address() + ": "),
            0u);
}

TEST(FindJobManagerAddressTest, SageAddressComesFirst) {
  const testing::TempDir state_dir;
  const ScopedVariable address("SAGE_ADDRESS", "10.0.0.5:4000");
  const auto found = find_jobmanager_address(state_dir.path());
  EXPECT_EQ(found.address, "10.0.0.5:4000");
  EXPECT_EQ(found.where, "10.0.0.5:4000 (from SAGE_ADDRESS)");
  EXPECT_TRUE(found.from_environment);
}

TEST(FindJobManagerAddressTest, ThenTheHeadOfTheStateDirectoryThenTheDefault) {
  const testing::TempDir state_dir;
  const ScopedVariable address("SAGE_ADDRESS", std::nullopt);
  const std::string info = head_info_path(state_dir.path());

  auto found = find_jobmanager_address(state_dir.path());
  EXPECT_EQ(found.address, "127.0.0.1:19001");
  EXPECT_EQ(found.where, "127.0.0.1:19001 (SAGE_ADDRESS is unset and " + info + " names no head)");
  EXPECT_FALSE(found.from_environment);

  std::ofstream(info) << R"({"jobmanager": "127.0.0.1:4321", "pid": 1})";
  found = find_jobmanager_address(state_dir.path());
  EXPECT_EQ(found.address, "127.0.0.1:4321");
  EXPECT_EQ(found.where, "127.0.0.1:4321 (from " + info + ")");

  // A damaged file is an error, not a silent fall back to the default port.
  std::ofstream(info) << R"({"jobmanager": 5)";
  try {
    find_jobmanager_address(state_dir.path());
    ADD_FAILURE() << "a damaged head.json was taken";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find(info + " is not the JSON a head writes"), 0u) << e.what();
  }
}

}  // namespace
}  // namespace sage::cluster
