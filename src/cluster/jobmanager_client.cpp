#include "cluster/jobmanager_client.hpp"

#include <cstdlib>
#include <fstream>

#include "cluster/cluster_config.hpp"
#include "cluster/program_store.hpp"
#include "net/rpc.hpp"
#include "sage/error.hpp"

namespace sage::cluster {

JobManagerAddress find_jobmanager_address(const std::string& state_dir) {
  if (const char* address = std::getenv("SAGE_ADDRESS"); address != nullptr && *address != '\0') {
    return {address, std::string(address) + " (from SAGE_ADDRESS)", true};
  }
  const std::string info = head_info_path(state_dir);
  if (std::string local = local_jobmanager_address(state_dir); !local.empty()) {
    return {local, local + " (from " + info + ")"};
  }
  const std::string fallback = "127.0.0.1:" + std::to_string(kDefaultJobManagerPort);
  return {fallback, fallback + " (SAGE_ADDRESS is unset and " + info + " names no head)"};
}

JobManagerClient::JobManagerClient(JobManagerClientOptions options)
    : options_(std::move(options)),
      stub_(rpc::JobManager::NewStub(net::make_channel(options_.address))) {
  if (options_.where.empty()) options_.where = options_.address;
  if (options_.token.empty()) {
    try {
      options_.token = find_token(options_.state_dir);
    } catch (const Error& e) {
      token_error_ = e.what();
    }
  }
}

std::unique_ptr<grpc::ClientContext> JobManagerClient::context() const {
  return net::make_context(options_.token);
}

template <class Request, class Reply>
Reply JobManagerClient::call(const std::string& what,
                             grpc::Status (rpc::JobManager::Stub::*method)(grpc::ClientContext*,
                                                                           const Request&, Reply*),
                             const Request& request) const {
  Reply reply;
  auto context = net::make_context(options_.token);
  if (options_.call_timeout.count() > 0) {
    context->set_deadline(std::chrono::system_clock::now() + options_.call_timeout);
  }
  const grpc::Status status = ((*stub_).*method)(context.get(), request, &reply);
  if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED && !token_error_.empty()) {
    throw Error(what + " at " + options_.where + ": " + token_error_);
  }
  if (!status.ok()) throw Error(net::describe(status, what, options_.where));
  return reply;
}

rpc::JobInfo JobManagerClient::job(const std::string& job_id) const {
  rpc::JobRef ref;
  ref.set_job_id(job_id);
  return call("cannot get job " + job_id, &rpc::JobManager::Stub::GetJob, ref);
}

rpc::JobList JobManagerClient::list_jobs() const {
  return call("cannot list jobs", &rpc::JobManager::Stub::ListJobs, rpc::Empty());
}

rpc::ClusterInfo JobManagerClient::cluster_status() const {
  return call("cannot get the cluster status", &rpc::JobManager::Stub::ClusterStatus, rpc::Empty());
}

rpc::JobInfo JobManagerClient::stop_job(const std::string& job_id) const {
  rpc::JobRef ref;
  ref.set_job_id(job_id);
  return call("cannot stop job " + job_id, &rpc::JobManager::Stub::StopJob, ref);
}

std::string JobManagerClient::submit_job(rpc::SubmitRequest request, const std::string& program,
                                         const std::string& bundle) const {
  const std::string what = "cannot submit job '" + request.name() + "'";
  request.set_program_sha256(sha256_of_file(program));
  upload_program(program, request.program_sha256(), what, "the program");
  if (!bundle.empty()) {
    request.set_bundle_sha256(sha256_of_file(bundle));
    upload_program(bundle, request.bundle_sha256(), what, "the script's bundle");
  }
  return call(what, &rpc::JobManager::Stub::SubmitJob, request).job_id();
}

void JobManagerClient::upload_program(const std::string& program, const std::string& sha256,
                                      const std::string& what, const std::string& kind) const {
  rpc::ProgramRef ref;
  ref.set_sha256(sha256);
  if (call(what, &rpc::JobManager::Stub::HasProgram, ref).present()) return;
  auto context = net::make_context(options_.token);
  rpc::ProgramRef stored;
  auto writer = stub_->UploadProgram(context.get(), &stored);
  std::ifstream file(program, std::ios::binary);
  std::string buffer(net::kChunkBytes, '\0');
  rpc::ProgramChunk chunk;
  chunk.set_sha256(sha256);  // the first chunk names the program
  while (file.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) ||
         file.gcount() > 0) {
    chunk.set_data(buffer.data(), static_cast<std::size_t>(file.gcount()));
    if (!writer->Write(chunk)) break;  // the head refused it; Finish says why
    chunk.clear_sha256();
  }
  writer->WritesDone();
  const grpc::Status uploaded = writer->Finish();
  if (!uploaded.ok()) {
    throw Error(net::describe(uploaded, "cannot upload " + kind, options_.where));
  }
}

std::optional<rpc::JobInfo> JobManagerClient::watch(
    const std::string& job_id, bool follow, const std::string& what,
    const std::function<void(const std::string&)>& on_line) const {
  rpc::WatchRequest request;
  request.set_job_id(job_id);
  request.set_follow(follow);
  auto context = net::make_context(options_.token);
  auto reader = stub_->WatchJob(context.get(), request);
  rpc::JobEvent event;
  std::optional<rpc::JobInfo> state;
  while (reader->Read(&event)) {
    if (event.has_output_line()) {
      on_line(event.output_line());
    } else {
      state = event.state();
    }
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) throw Error(net::describe(status, what, options_.where));
  return state;
}

}  // namespace sage::cluster
