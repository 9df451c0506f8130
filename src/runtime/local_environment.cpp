#include <random>

#include "checkpoint/storage.hpp"
#include "runtime/local_checkpoints.hpp"
#include "runtime/process_job.hpp"
#include "sage/environment.hpp"

namespace sage {
namespace {

std::string new_job_id() {
  std::random_device random;
  std::uniform_int_distribution<std::uint64_t> digits;
  char id[32];
  std::snprintf(id, sizeof id, "job-%012llx",
                static_cast<unsigned long long>(digits(random) & 0xffffffffffffULL));
  return id;
}

}  // namespace

Environment::Environment(std::string name, ExecutionConfig config)
    : graph_(std::make_shared<detail::LogicalGraph>()), config_(config) {
  config_.validate();
  graph_->job_name = std::move(name);
}

Environment::~Environment() = default;

void Environment::seal() {
  graph_->require_open();
  graph_->sealed = true;
}

JobResult Environment::execute() {
  submit(true);
  return wait();
}

LocalEnvironment::LocalEnvironment(std::string name, ExecutionConfig config)
    : Environment(std::move(name), config) {}

LocalEnvironment::~LocalEnvironment() {
  // A job still running is stopped and waited for while its checkpoints'
  // coordinator is there: with checkpoints on, its tasks end only after the
  // final checkpoint.
  if (job_ && !result_) {
    job_->request_stop();
    try {
      wait();
    } catch (const Error&) {
      // The job failed; a destructor has nobody to tell.
    }
  }
}

std::string LocalEnvironment::submit(bool autostop) {
  seal();
  job_ = std::make_unique<runtime::ProcessJob>(graph_, config_, new_job_id());
  if (config_.checkpoint_interval.count() > 0) {
    checkpoints_ = std::make_unique<runtime::LocalCheckpoints>(
        *job_, config_,
        checkpoint::checkpoint_base(config_.checkpoint_directory, checkpoint::default_state_dir()));
  }
  job_->start();
  if (checkpoints_) checkpoints_->start();
  const std::string id = job_->id();
  if (autostop) wait();
  return id;
}

JobResult LocalEnvironment::wait() {
  if (!job_) {
    throw InvalidPlanError("environment '" + name() +
                           "' has no job to wait for; call submit() first");
  }
  if (!result_) {
    JobResult result = job_->wait();
    if (checkpoints_) {
      const auto stats = checkpoints_->stats();
      result.checkpoints_completed = stats.completed;
      result.checkpoints_failed = stats.failed;
      if (stats.last) {
        result.last_checkpoint_id = stats.last->id;
        result.last_checkpoint_bytes = stats.last->bytes;
      }
      checkpoints_.reset();  // their directory goes with the job
    }
    result_ = std::move(result);
  }
  if (result_->state == JobState::kFailed) throw JobFailedError(*result_);
  return *result_;
}

void LocalEnvironment::stop() {
  if (job_) job_->request_stop();
}

}  // namespace sage
