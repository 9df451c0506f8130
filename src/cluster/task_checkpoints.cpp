#include "cluster/task_checkpoints.hpp"

#include <spdlog/spdlog.h>

#include "cluster/head_snapshot_storage.hpp"
#include "net/rpc.hpp"

namespace sage::cluster {
namespace {

rpc::CheckpointReport::Task task_message(const checkpoint::TaskKey& task) {
  rpc::CheckpointReport::Task message;
  message.set_chain(task.chain);
  message.set_instance(task.instance);
  return message;
}

}  // namespace

TaskCheckpoints::TaskCheckpoints(runtime::ProcessJob& job, const TaskAssignment& assignment,
                                 const std::string& head_address, const net::TlsFiles& tls)
    : job_(job), head_address_(head_address) {
  const auto channel = net::make_channel(head_address, tls);
  if (assignment.checkpoint_root.empty()) {
    storage_ = std::make_unique<HeadSnapshotStorage>(channel, head_address, assignment.token,
                                                     assignment.job_id, assignment.attempt);
  } else {
    storage_ = std::make_unique<checkpoint::DirectoryStorage>(assignment.checkpoint_root);
  }
  stub_ = rpc::ClusterService::NewStub(channel);
  context_ = net::make_context(assignment.token);
  stream_ = stub_->Checkpoints(context_.get());
  rpc::CheckpointReport hello;
  hello.mutable_hello()->set_job_id(assignment.job_id);
  hello.mutable_hello()->set_attempt(assignment.attempt);
  hello.mutable_hello()->set_process_index(assignment.process_index);
  if (!stream_->Write(hello)) {
    const grpc::Status status = stream_->Finish();
    throw Error(net::describe(status, "cannot reach the checkpoint coordinator", head_address));
  }
  job.enable_checkpoints(*this, assignment.restore_checkpoint);
  reader_ = std::thread([this] { receive_commands(); });
}

TaskCheckpoints::~TaskCheckpoints() {
  {
    std::lock_guard lock(write_mutex_);
    closed_ = true;
    stream_->WritesDone();
  }
  context_->TryCancel();  // the head may keep the stream open: end the read
  reader_.join();
}

void TaskCheckpoints::receive_commands() {
  rpc::CheckpointCommand command;
  while (stream_->Read(&command)) {
    switch (command.kind()) {
      case rpc::CheckpointCommand::TRIGGER:
        job_.trigger_checkpoint(command.checkpoint());
        break;
      case rpc::CheckpointCommand::FINAL:
        job_.trigger_final_checkpoint(command.checkpoint());
        break;
      case rpc::CheckpointCommand::COMPLETE:
        job_.checkpoint_complete(command.checkpoint());
        break;
      case rpc::CheckpointCommand::ABORT:
        job_.abort_checkpoint(command.checkpoint());
        break;
      default:
        break;
    }
  }
  const grpc::Status status = stream_->Finish();
  {
    std::lock_guard lock(write_mutex_);
    if (closed_) return;
    closed_ = true;
  }
  job_.fail(net::describe(status, "lost the job's checkpoint coordinator", head_address_),
            runtime::FailureKind::kCause);
}

void TaskCheckpoints::send(const rpc::CheckpointReport& report) {
  std::lock_guard lock(write_mutex_);
  if (closed_) return;
  if (!stream_->Write(report)) {
    // The reader sees the stream end and fails the job with its status.
    spdlog::debug("the checkpoint stream to {} is closed", head_address_);
  }
}

void TaskCheckpoints::acknowledged(std::uint64_t id, const checkpoint::TaskKey& task,
                                   std::uint64_t bytes, std::int64_t alignment_ns) {
  rpc::CheckpointReport report;
  auto* ack = report.mutable_acknowledged();
  ack->set_checkpoint(id);
  *ack->mutable_task() = task_message(task);
  ack->set_bytes(bytes);
  ack->set_alignment_ns(alignment_ns);
  send(report);
}

void TaskCheckpoints::declined(std::uint64_t id, const checkpoint::TaskKey& task,
                               const std::string& reason) {
  rpc::CheckpointReport report;
  auto* declined = report.mutable_declined();
  declined->set_checkpoint(id);
  *declined->mutable_task() = task_message(task);
  declined->set_reason(reason.substr(0, 1000));
  send(report);
}

void TaskCheckpoints::finished(const checkpoint::TaskKey& task) {
  rpc::CheckpointReport report;
  *report.mutable_finished() = task_message(task);
  send(report);
}

}  // namespace sage::cluster
