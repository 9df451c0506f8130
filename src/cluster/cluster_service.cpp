#include "cluster/cluster_service.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/storage.hpp"
#include "cluster/cluster_config.hpp"
#include "cluster/request_validation.hpp"
#include "cluster/rpc_call.hpp"

namespace sage::cluster {
namespace {

using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;

}  // namespace

Status ClusterService::Join(ServerContext* context, const rpc::JoinRequest* request,
                            grpc::ServerWriter<rpc::WorkerCommand>* writer) {
  return serve("Join", context, options_.token, *request, [&]() -> Status {
    const std::string& id = request->node_id();
    MutexLock lock(state_.mutex);
    const std::optional<std::uint64_t> session = state_.nodes.join(*request, now_ms());
    if (!session) {
      return {StatusCode::ALREADY_EXISTS,
              "node '" + id + "' is already in the cluster; give each worker its own --node-id"};
    }
    state_.jobs.schedule_pending();
    state_.changed.notify_all();
    lock.unlock();
    rpc::WorkerCommand welcome;
    welcome.mutable_welcome()->set_head_version(SAGE_VERSION);
    if (!writer->Write(welcome)) return Status::OK;
    lock.lock();
    while (state_.nodes.in_session(id, *session)) {
      std::optional<rpc::WorkerCommand> command = state_.nodes.take_command(id);
      if (!command) {
        state_.changed.wait_for(state_.mutex, kStreamPoll);
        if (context->IsCancelled() || state_.shutting_down) break;
        continue;
      }
      lock.unlock();
      const bool sent = writer->Write(*command);
      lock.lock();
      if (!sent) break;
    }
    if (state_.nodes.in_session(id, *session) && !state_.shutting_down) {
      state_.jobs.node_died(id, "the worker on node '" + id + "' disconnected");
      state_.changed.notify_all();
    }
    return Status::OK;
  });
}

// A task process's stream of checkpoint reports, answered with its
// coordinator's commands. Reports are read on a thread of their own (a sync
// stream may read and write at once); commands are written as they come.
// The stream ends with the run of the job: when it ends, fails or restarts.
Status ClusterService::Checkpoints(
    ServerContext* context,
    grpc::ServerReaderWriter<rpc::CheckpointCommand, rpc::CheckpointReport>* stream) {
  return serve("Checkpoints", context, options_.token, [&]() -> Status {
    rpc::CheckpointReport first;
    if (!stream->Read(&first)) return Status::OK;
    if (auto problem = problem_in(first); problem || !first.has_hello()) {
      return {StatusCode::INVALID_ARGUMENT,
              problem.value_or("the first checkpoint report must be a hello")};
    }
    const rpc::CheckpointReport::Hello hello = first.hello();
    MutexLock lock(state_.mutex);
    if (!state_.jobs.has_checkpoint_stream(hello.job_id(), hello.attempt(),
                                           hello.process_index())) {
      return {StatusCode::FAILED_PRECONDITION,
              "job " + hello.job_id() + " has no run " + std::to_string(hello.attempt()) +
                  " with checkpoints and a task process " + std::to_string(hello.process_index()) +
                  " (ended, restarted, or never)"};
    }
    lock.unlock();
    bool reading = true;  // guarded by state_.mutex
    std::string bad_report;
    std::thread reader([&] {
      rpc::CheckpointReport report;
      while (stream->Read(&report)) {
        if (auto problem = problem_in(report)) {
          MutexLock reader_lock(state_.mutex);
          bad_report = *problem;
          break;
        }
        MutexLock reader_lock(state_.mutex);
        state_.jobs.checkpoint_report(hello.job_id(), hello.attempt(), report);
        state_.changed.notify_all();
      }
      MutexLock reader_lock(state_.mutex);
      reading = false;
      state_.changed.notify_all();
    });
    lock.lock();
    while (reading && bad_report.empty() && !state_.shutting_down && !context->IsCancelled()) {
      auto commands = state_.jobs.take_checkpoint_commands(hello.job_id(), hello.attempt(),
                                                           hello.process_index());
      if (!commands) break;  // the run is over
      if (commands->empty()) {
        state_.changed.wait_for(state_.mutex, kStreamPoll);
        continue;
      }
      lock.unlock();
      bool sent = true;
      for (const auto& command : *commands) sent = sent && stream->Write(command);
      lock.lock();
      if (!sent) break;
    }
    const std::string problem = bad_report;
    lock.unlock();
    context->TryCancel();  // ends the reader's Read
    reader.join();
    if (!problem.empty()) return {StatusCode::INVALID_ARGUMENT, problem};
    return Status::OK;
  });
}

Status ClusterService::Heartbeat(ServerContext* context, const rpc::NodeRef* request, rpc::Empty*) {
  return serve("Heartbeat", context, options_.token, *request, [&]() -> Status {
    MutexLock lock(state_.mutex);
    if (!state_.nodes.heartbeat(request->node_id(), now_ms())) {
      return {StatusCode::NOT_FOUND, "node '" + request->node_id() + "' must join again"};
    }
    return Status::OK;
  });
}

Status ClusterService::ReportPrepared(ServerContext* context, const rpc::PreparedReport* request,
                                      rpc::Empty*) {
  return serve("ReportPrepared", context, options_.token, *request, [&]() -> Status {
    MutexLock lock(state_.mutex);
    if (auto problem = state_.jobs.prepared(*request)) return invalid(*problem);
    state_.changed.notify_all();
    return Status::OK;
  });
}

Status ClusterService::ReportOutput(ServerContext* context, const rpc::OutputReport* request,
                                    rpc::Empty*) {
  return serve("ReportOutput", context, options_.token, *request, [&]() -> Status {
    if (request->lines_size() > 0) {
      // The store takes no output for a job it has no record of (one forgotten).
      if (!store_.append_logs(
              request->job_id(),
              std::vector<std::string>(request->lines().begin(), request->lines().end()))) {
        return unknown_job(request->job_id());
      }
      MutexLock lock(state_.mutex);
      state_.changed.notify_all();
    }
    return Status::OK;
  });
}

Status ClusterService::ReportProgress(ServerContext* context, const rpc::ProgressReport* request,
                                      rpc::Empty*) {
  return serve("ReportProgress", context, options_.token, *request, [&]() -> Status {
    MutexLock lock(state_.mutex);
    state_.jobs.progress(*request);
    return Status::OK;
  });
}

Status ClusterService::ReportExit(ServerContext* context, const rpc::ExitReport* request,
                                  rpc::Empty*) {
  return serve("ReportExit", context, options_.token, *request, [&]() -> Status {
    MutexLock lock(state_.mutex);
    state_.jobs.exited(*request);
    state_.changed.notify_all();
    return Status::OK;
  });
}

Status ClusterService::FetchProgram(ServerContext* context, const rpc::ProgramRef* request,
                                    grpc::ServerWriter<rpc::ProgramChunk>* writer) {
  return serve("FetchProgram", context, options_.token, *request, [&]() -> Status {
    if (!programs_.contains(request->sha256())) {
      return {StatusCode::NOT_FOUND, "no program " + request->sha256().substr(0, 64)};
    }
    std::FILE* file = std::fopen(programs_.path_of(request->sha256()).c_str(), "rb");
    if (file == nullptr) return {StatusCode::INTERNAL, "cannot read the stored program"};
    std::string buffer(net::kChunkBytes, '\0');
    rpc::ProgramChunk chunk;
    chunk.set_sha256(request->sha256());
    std::size_t n;
    while ((n = std::fread(buffer.data(), 1, buffer.size(), file)) > 0) {
      chunk.set_data(buffer.data(), n);
      if (!writer->Write(chunk)) break;
      chunk.clear_sha256();
    }
    std::fclose(file);
    return Status::OK;
  });
}

// A task process's snapshot, written to the run's checkpoint directory as
// its chunks arrive; it replaces the file only once all of it is there. The
// head's lock is held only to find where it goes: a checkpoint that is
// aborted meanwhile has its directory pruned later.
Status ClusterService::StoreSnapshot(ServerContext* context,
                                     grpc::ServerReader<rpc::SnapshotChunk>* reader, rpc::Empty*) {
  return serve("StoreSnapshot", context, options_.token, [&]() -> Status {
    rpc::SnapshotChunk chunk;
    if (!reader->Read(&chunk)) return invalid("a snapshot upload without a chunk");
    if (!chunk.has_ref()) return invalid("the first chunk of a snapshot must name it (ref)");
    if (auto problem = problem_in(chunk.ref())) return invalid(*problem);
    const std::uint64_t total = chunk.total_bytes();
    if (total > net::kMaxSnapshotBytes) {
      return {StatusCode::RESOURCE_EXHAUSTED,
              fmt::format("a snapshot of {} bytes; the head stores at most {}", total,
                          net::kMaxSnapshotBytes)};
    }
    JobTable::SnapshotLocation location;
    {
      MutexLock lock(state_.mutex);
      location = state_.jobs.snapshot_location(chunk.ref(), JobTable::SnapshotUse::kStore);
    }
    if (location.path.empty()) return {StatusCode::FAILED_PRECONDITION, location.refusal};
    checkpoint::DurableFile file(location.path);
    std::uint64_t received = 0;
    do {
      if (chunk.data().size() > total - received) {
        return invalid(
            fmt::format("the snapshot has more than the {} bytes its first chunk named", total));
      }
      file.append(chunk.data());
      received += chunk.data().size();
    } while (reader->Read(&chunk));
    if (received != total) {
      return invalid(
          fmt::format("the snapshot upload ended after {} of its {} bytes", received, total));
    }
    file.commit();
    return Status::OK;
  });
}

Status ClusterService::FetchSnapshot(ServerContext* context, const rpc::SnapshotRef* request,
                                     grpc::ServerWriter<rpc::SnapshotChunk>* writer) {
  return serve("FetchSnapshot", context, options_.token, *request, [&]() -> Status {
    JobTable::SnapshotLocation location;
    {
      MutexLock lock(state_.mutex);
      location = state_.jobs.snapshot_location(*request, JobTable::SnapshotUse::kRestore);
    }
    if (location.path.empty()) return {StatusCode::FAILED_PRECONDITION, location.refusal};
    std::FILE* file = std::fopen(location.path.c_str(), "rb");
    if (file == nullptr) {
      return {StatusCode::NOT_FOUND,
              fmt::format("checkpoint {} has no snapshot of task {}.{}", request->checkpoint(),
                          request->chain(), request->instance())};
    }
    std::fseek(file, 0, SEEK_END);
    const long size = std::ftell(file);
    std::fseek(file, 0, SEEK_SET);
    std::string buffer(net::kChunkBytes, '\0');
    rpc::SnapshotChunk chunk;
    *chunk.mutable_ref() = *request;
    chunk.set_total_bytes(size < 0 ? 0 : static_cast<std::uint64_t>(size));
    std::size_t n;
    bool first = true;
    while ((n = std::fread(buffer.data(), 1, buffer.size(), file)) > 0 || first) {
      chunk.set_data(buffer.data(), n);
      if (!writer->Write(chunk)) break;
      chunk.clear_ref();
      chunk.clear_total_bytes();
      first = false;
    }
    const bool failed = std::ferror(file) != 0;
    std::fclose(file);
    if (failed) return {StatusCode::INTERNAL, "cannot read the snapshot on the head"};
    return Status::OK;
  });
}

}  // namespace sage::cluster
