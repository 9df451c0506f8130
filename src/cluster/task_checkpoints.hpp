// A task process's side of its job's checkpoints on a cluster: its tasks'
// snapshots go to the head (head_snapshot_storage.hpp) or to the job's
// checkpoint directory on a mount every node shares, and a stream to the head's
// coordinator (ClusterService.Checkpoints) carries their acknowledgements
// one way and the coordinator's commands (trigger, final, complete, abort)
// the other. A stream that breaks fails the job: without its coordinator a
// job could neither checkpoint nor commit its output.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "checkpoint/storage.hpp"
#include "cluster/task_process.hpp"
#include "net/tls.hpp"
#include "runtime/process_job.hpp"
#include "sage.grpc.pb.h"

namespace sage::cluster {

class TaskCheckpoints final : public runtime::CheckpointLink {
 public:
  // Opens the stream to the head at `head_address` and links `job` (not yet
  // started) to it. Throws sage::Error when the head cannot be reached.
  TaskCheckpoints(runtime::ProcessJob& job, const TaskAssignment& assignment,
                  const std::string& head_address, const net::TlsFiles& tls);
  ~TaskCheckpoints() override;  // closes the stream

  checkpoint::CheckpointStorage& storage() override { return *storage_; }
  void acknowledged(std::uint64_t id, const checkpoint::TaskKey& task, std::uint64_t bytes,
                    std::int64_t alignment_ns) override;
  void declined(std::uint64_t id, const checkpoint::TaskKey& task,
                const std::string& reason) override;
  void finished(const checkpoint::TaskKey& task) override;

 private:
  void send(const rpc::CheckpointReport& report);
  void receive_commands();

  runtime::ProcessJob& job_;
  std::unique_ptr<checkpoint::CheckpointStorage> storage_;
  std::string head_address_;
  std::unique_ptr<rpc::ClusterService::Stub> stub_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<rpc::CheckpointReport, rpc::CheckpointCommand>> stream_;
  std::mutex write_mutex_;  // one write at a time; tasks and the snapshot writer report
  bool closed_ = false;     // guarded by write_mutex_
  std::thread reader_;
};

}  // namespace sage::cluster
