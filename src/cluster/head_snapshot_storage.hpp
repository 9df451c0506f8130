// Task snapshots kept on the head: a task process streams each snapshot to
// the run's checkpoint directory in the head's state directory
// (ClusterService.StoreSnapshot) and fetches the one it restores
// (FetchSnapshot). The storage of a job that names no checkpoint directory,
// so that a cluster of several machines needs no shared file system.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "checkpoint/storage.hpp"
#include "sage.grpc.pb.h"

namespace sage::cluster {

class HeadSnapshotStorage final : public checkpoint::CheckpointStorage {
 public:
  // The snapshots of run `attempt` of `job_id`, on the head at `head_address`.
  HeadSnapshotStorage(const std::shared_ptr<grpc::Channel>& channel, std::string head_address,
                      std::string token, std::string job_id, int attempt);

  // Both throw sage::Error with the head's reason.
  void write_task_snapshot(std::uint64_t checkpoint, const checkpoint::TaskKey& task,
                           std::string_view bytes) override;
  std::string read_task_snapshot(std::uint64_t checkpoint,
                                 const checkpoint::TaskKey& task) const override;

 private:
  rpc::SnapshotRef ref(std::uint64_t checkpoint, const checkpoint::TaskKey& task) const;

  std::unique_ptr<rpc::ClusterService::Stub> stub_;
  std::string head_address_;
  std::string token_;
  std::string job_id_;
  int attempt_;
};

}  // namespace sage::cluster
