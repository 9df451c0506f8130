// The client of the head's JobManager service, shared by the `sage` command
// and RemoteEnvironment: presents the cluster token, turns a failed call into
// a sage::Error that says what failed, where, and what to do, uploads a
// program once per content hash, and follows a job's output.
// Constant after construction; any thread may call it (gRPC stubs are
// thread-safe), each call blocks until the head answers or the call fails.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "sage.grpc.pb.h"

namespace sage::cluster {

// A single call of the `sage` command fails after this long without an answer;
// uploads and watches, which last as long as the program or the job, have none.
constexpr auto kCommandCallTimeout = std::chrono::seconds(10);

// The JobManager a client talks to when no address is given: $SAGE_ADDRESS,
// else the head started from `state_dir` (its head.json), else
// 127.0.0.1:kDefaultJobManagerPort.
struct JobManagerAddress {
  std::string address;            // host:port
  std::string where;              // the address for messages, with where it came from
  bool from_environment = false;  // $SAGE_ADDRESS set it
};
JobManagerAddress find_jobmanager_address(const std::string& state_dir);

struct JobManagerClientOptions {
  std::string address;  // host:port
  std::string where;    // the address as errors name it; empty: `address`
  // Empty: $SAGE_TOKEN, else the token file in state_dir. Without either the
  // calls still go out: "no head answers" is the better message when there is
  // no head, the token's absence when there is one (and it refuses the call).
  std::string token;
  std::string state_dir;
  // How long a single call may take; zero: as long as it takes.
  std::chrono::milliseconds call_timeout{0};
};

class JobManagerClient {
 public:
  explicit JobManagerClient(JobManagerClientOptions options);

  // Each throws sage::Error when the call fails, saying what failed, where,
  // and why or what to do (net::describe), e.g. "cannot get job <id> at
  // <where>: no job '<id>'; ..." for an unknown id.
  rpc::JobInfo job(const std::string& job_id) const;
  rpc::JobList list_jobs() const;
  rpc::ClusterInfo cluster_status() const;
  // Asks the head to stop the job; returns its state right after (its
  // processes may still be ending).
  rpc::JobInfo stop_job(const std::string& job_id) const;
  // Uploads `program` (and the job's `bundle` file, if given) unless the
  // head has its content already, fills in request.program_sha256 (and
  // bundle_sha256) and submits; returns the new job's id.
  std::string submit_job(rpc::SubmitRequest request, const std::string& program,
                         const std::string& bundle = "") const;

  // Passes the job's output lines to `on_line` as they arrive (with `follow`
  // until the job ends, else those kept so far) and returns the job's state
  // at the end, when the head sent one. Throws sage::Error "<what> at
  // <where>: <why>" when the stream breaks.
  std::optional<rpc::JobInfo> watch(const std::string& job_id, bool follow, const std::string& what,
                                    const std::function<void(const std::string&)>& on_line) const;

  // For calls the methods above do not cover: a context with the token (and
  // no deadline), and the stub.
  std::unique_ptr<grpc::ClientContext> context() const;
  rpc::JobManager::Stub& stub() const { return *stub_; }

 private:
  template <class Request, class Reply>
  Reply call(const std::string& what,
             grpc::Status (rpc::JobManager::Stub::*method)(grpc::ClientContext*, const Request&,
                                                           Reply*),
             const Request& request) const;
  // Uploads the file `program` unless the head has it; `kind` names it in errors
  // ("the program", "the script's bundle").
  void upload_program(const std::string& program, const std::string& sha256,
                      const std::string& what, const std::string& kind) const;

  JobManagerClientOptions options_;
  std::string token_error_;  // why no token was found, if none was
  std::unique_ptr<rpc::JobManager::Stub> stub_;
};

}  // namespace sage::cluster
