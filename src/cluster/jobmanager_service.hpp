// The JobManager service that clients and the `sage` command call (port
// 19001): uploads, submits, watches, lists and stops jobs, and reports the
// cluster. Thin handlers over HeadState, the job database and the program
// store, which it borrows; gRPC calls them on its threads.
#pragma once

#include "cluster/head.hpp"
#include "cluster/head_state.hpp"
#include "cluster/job_store.hpp"
#include "cluster/program_store.hpp"
#include "sage.grpc.pb.h"

namespace sage::cluster {

class JobManagerService final : public rpc::JobManager::Service {
 public:
  JobManagerService(const HeadOptions& options, HeadState& state, JobStore& store,
                    ProgramStore& programs)
      : options_(options), state_(state), store_(store), programs_(programs) {}

  grpc::Status HasProgram(grpc::ServerContext* context, const rpc::ProgramRef* request,
                          rpc::HasProgramReply* reply) override;
  grpc::Status UploadProgram(grpc::ServerContext* context,
                             grpc::ServerReader<rpc::ProgramChunk>* reader,
                             rpc::ProgramRef* reply) override;
  grpc::Status SubmitJob(grpc::ServerContext* context, const rpc::SubmitRequest* request,
                         rpc::SubmitReply* reply) override;
  grpc::Status WatchJob(grpc::ServerContext* context, const rpc::WatchRequest* request,
                        grpc::ServerWriter<rpc::JobEvent>* writer) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const rpc::Empty* request,
                        rpc::JobList* reply) override;
  grpc::Status GetJob(grpc::ServerContext* context, const rpc::JobRef* request,
                      rpc::JobInfo* reply) override;
  grpc::Status StopJob(grpc::ServerContext* context, const rpc::JobRef* request,
                       rpc::JobInfo* reply) override;
  grpc::Status ClusterStatus(grpc::ServerContext* context, const rpc::Empty* request,
                             rpc::ClusterInfo* reply) override;

 private:
  grpc::Status forgotten_job(const std::string& id) const;
  std::string discarded_lines_notice(std::int64_t count) const;

  const HeadOptions& options_;
  HeadState& state_;
  JobStore& store_;
  ProgramStore& programs_;
};

}  // namespace sage::cluster
