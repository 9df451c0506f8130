#include "cluster/head_snapshot_storage.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "net/rpc.hpp"
#include "sage/error.hpp"

namespace sage::cluster {

HeadSnapshotStorage::HeadSnapshotStorage(const std::shared_ptr<grpc::Channel>& channel,
                                         std::string head_address, std::string token,
                                         std::string job_id, int attempt)
    : stub_(rpc::ClusterService::NewStub(channel)),
      head_address_(std::move(head_address)),
      token_(std::move(token)),
      job_id_(std::move(job_id)),
      attempt_(attempt) {}

rpc::SnapshotRef HeadSnapshotStorage::ref(std::uint64_t checkpoint,
                                          const checkpoint::TaskKey& task) const {
  rpc::SnapshotRef ref;
  ref.set_job_id(job_id_);
  ref.set_attempt(attempt_);
  ref.set_checkpoint(checkpoint);
  ref.set_chain(task.chain);
  ref.set_instance(task.instance);
  return ref;
}

void HeadSnapshotStorage::write_task_snapshot(std::uint64_t checkpoint,
                                              const checkpoint::TaskKey& task,
                                              std::string_view bytes) {
  auto context = net::make_context(token_);
  rpc::Empty reply;
  auto writer = stub_->StoreSnapshot(context.get(), &reply);
  rpc::SnapshotChunk chunk;
  *chunk.mutable_ref() = ref(checkpoint, task);
  chunk.set_total_bytes(bytes.size());
  std::size_t at = 0;
  do {
    const std::size_t n = std::min(net::kChunkBytes, bytes.size() - at);
    chunk.set_data(bytes.data() + at, n);
    at += n;
    // A failed write means the call has ended: Finish() says why.
    if (!writer->Write(chunk)) break;
    chunk.clear_ref();
    chunk.clear_total_bytes();
  } while (at < bytes.size());
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  if (!status.ok()) {
    throw Error(net::describe(
        status,
        fmt::format("cannot store the snapshot of task {}.{} for checkpoint {} on the head",
                    task.chain, task.instance, checkpoint),
        head_address_));
  }
}

std::string HeadSnapshotStorage::read_task_snapshot(std::uint64_t checkpoint,
                                                    const checkpoint::TaskKey& task) const {
  auto context = net::make_context(token_);
  auto reader = stub_->FetchSnapshot(context.get(), ref(checkpoint, task));
  const std::string what = fmt::format("cannot fetch the snapshot of task {}.{} of checkpoint {}",
                                       task.chain, task.instance, checkpoint);
  std::string bytes;
  std::uint64_t total = 0;
  rpc::SnapshotChunk chunk;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (first) {
      total = chunk.total_bytes();
      if (total > net::kMaxSnapshotBytes) {
        context->TryCancel();
        reader->Finish();
        throw Error(
            fmt::format("{}: the head names {} bytes, more than the most a snapshot may "
                        "have ({})",
                        what, total, net::kMaxSnapshotBytes));
      }
      bytes.reserve(total);
      first = false;
    }
    if (chunk.data().size() > total - bytes.size()) {
      context->TryCancel();
      reader->Finish();
      throw Error(fmt::format("{}: the head sent more than the {} bytes it named", what, total));
    }
    bytes += chunk.data();
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) throw Error(net::describe(status, what, head_address_));
  if (first || bytes.size() != total) {
    throw Error(fmt::format("{}: the head sent {} of its {} bytes", what, bytes.size(), total));
  }
  return bytes;
}

}  // namespace sage::cluster
