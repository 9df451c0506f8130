// The cluster service that workers call (port 10001): a worker joins and
// receives its commands over the stream its Join opened (the head never
// dials a worker), sends heartbeats, and reports its task processes and
// their output; task processes fetch their program, and store and fetch
// their checkpoint snapshots. Thin handlers over
// HeadState, the job database and the program store, which it borrows;
// gRPC calls them on its threads.
#pragma once

#include "cluster/head.hpp"
#include "cluster/head_state.hpp"
#include "cluster/job_store.hpp"
#include "cluster/program_store.hpp"
#include "sage.grpc.pb.h"

namespace sage::cluster {

class ClusterService final : public rpc::ClusterService::Service {
 public:
  ClusterService(const HeadOptions& options, HeadState& state, JobStore& store,
                 ProgramStore& programs)
      : options_(options), state_(state), store_(store), programs_(programs) {}

  grpc::Status Join(grpc::ServerContext* context, const rpc::JoinRequest* request,
                    grpc::ServerWriter<rpc::WorkerCommand>* writer) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const rpc::NodeRef* request,
                         rpc::Empty* reply) override;
  grpc::Status ReportPrepared(grpc::ServerContext* context, const rpc::PreparedReport* request,
                              rpc::Empty* reply) override;
  grpc::Status ReportOutput(grpc::ServerContext* context, const rpc::OutputReport* request,
                            rpc::Empty* reply) override;
  grpc::Status ReportProgress(grpc::ServerContext* context, const rpc::ProgressReport* request,
                              rpc::Empty* reply) override;
  grpc::Status ReportExit(grpc::ServerContext* context, const rpc::ExitReport* request,
                          rpc::Empty* reply) override;
  grpc::Status Checkpoints(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<rpc::CheckpointCommand, rpc::CheckpointReport>* stream) override;
  grpc::Status FetchProgram(grpc::ServerContext* context, const rpc::ProgramRef* request,
                            grpc::ServerWriter<rpc::ProgramChunk>* writer) override;
  grpc::Status StoreSnapshot(grpc::ServerContext* context,
                             grpc::ServerReader<rpc::SnapshotChunk>* reader,
                             rpc::Empty* reply) override;
  grpc::Status FetchSnapshot(grpc::ServerContext* context, const rpc::SnapshotRef* request,
                             grpc::ServerWriter<rpc::SnapshotChunk>* writer) override;

 private:
  const HeadOptions& options_;
  HeadState& state_;
  JobStore& store_;
  ProgramStore& programs_;
};

}  // namespace sage::cluster
