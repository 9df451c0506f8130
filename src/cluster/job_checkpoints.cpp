#include "cluster/job_checkpoints.hpp"

#include <chrono>

namespace sage::cluster {
namespace {

checkpoint::CoordinatorSettings settings_of(const rpc::CheckpointSettings& s) {
  using std::chrono::milliseconds;
  return checkpoint::CoordinatorSettings{
      milliseconds(s.interval_ms()), milliseconds(s.min_pause_ms()), milliseconds(s.timeout_ms()),
      s.tolerable_failures(), s.retained()};
}

checkpoint::CoordinatorActions& as_actions(checkpoint::CoordinatorActions& actions) {
  return actions;
}

}  // namespace

JobCheckpoints::JobCheckpoints(const rpc::CheckpointSettings& settings, const std::string& job_id,
                               const std::string& fingerprint, int attempt, std::string root,
                               std::vector<checkpoint::TaskKey> tasks, int processes,
                               std::uint64_t next_id)
    : attempt_(attempt),
      storage_(std::move(root)),
      coordinator_(settings_of(settings), job_id, fingerprint, std::move(tasks), storage_,
                   as_actions(*this), next_id, checkpoint::Clock::now()),
      outboxes_(static_cast<std::size_t>(processes)) {}

void JobCheckpoints::report(const rpc::CheckpointReport& report,
                            checkpoint::Clock::time_point now) {
  const auto task_of = [](const rpc::CheckpointReport::Task& t) {
    return checkpoint::TaskKey{t.chain(), t.instance()};
  };
  switch (report.report_case()) {
    case rpc::CheckpointReport::kAcknowledged: {
      const auto& ack = report.acknowledged();
      coordinator_.acknowledge(ack.checkpoint(), task_of(ack.task()), ack.bytes(),
                               ack.alignment_ns(), now);
      break;
    }
    case rpc::CheckpointReport::kDeclined: {
      const auto& declined = report.declined();
      coordinator_.decline(declined.checkpoint(), task_of(declined.task()), declined.reason(), now);
      break;
    }
    case rpc::CheckpointReport::kFinished:
      coordinator_.task_finished(task_of(report.finished()), now);
      break;
    default:
      break;
  }
}

std::vector<rpc::CheckpointCommand> JobCheckpoints::take_commands(int index) {
  if (index < 0 || index >= static_cast<int>(outboxes_.size())) return {};
  auto& outbox = outboxes_[static_cast<std::size_t>(index)];
  std::vector<rpc::CheckpointCommand> commands(std::make_move_iterator(outbox.begin()),
                                               std::make_move_iterator(outbox.end()));
  outbox.clear();
  return commands;
}

void JobCheckpoints::send(rpc::CheckpointCommand::Kind kind, std::uint64_t id) {
  rpc::CheckpointCommand command;
  command.set_kind(kind);
  command.set_checkpoint(id);
  for (auto& outbox : outboxes_) outbox.push_back(command);
}

std::optional<std::string> JobCheckpoints::take_failure() {
  if (!failure_ || failure_taken_) return std::nullopt;
  failure_taken_ = true;
  return failure_;
}

rpc::CheckpointSummary JobCheckpoints::summary() const {
  const auto& stats = coordinator_.stats();
  rpc::CheckpointSummary summary;
  summary.set_completed(stats.completed);
  summary.set_failed(stats.failed);
  summary.set_last_failure(stats.last_failure);
  if (stats.last) {
    summary.set_last_id(stats.last->id);
    summary.set_last_completed_at_ms(stats.last->completed_at_ms);
    summary.set_last_duration_ms(stats.last->completed_at_ms - stats.last->triggered_at_ms);
    summary.set_last_bytes(stats.last->bytes);
    summary.set_last_alignment_ms(stats.last->alignment_ns / 1'000'000);
  }
  return summary;
}

std::optional<checkpoint::CheckpointMetadata> latest_checkpoint(const std::string& root) {
  return checkpoint::DirectoryStorage(root).latest_complete();
}

}  // namespace sage::cluster
