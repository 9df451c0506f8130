#include "cluster/job_table.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <set>

#include "cluster/cluster_config.hpp"
#include "cluster/job_checkpoints.hpp"
#include "cluster/job_info.hpp"
#include "cluster/job_table_job.hpp"
#include "cluster/request_validation.hpp"
#include "cluster/task_process.hpp"
#include "sage/error.hpp"

namespace sage::cluster {
namespace {

// Stored programs kept beyond those of pending and running jobs, most
// recently used first: a resubmitted program need not be uploaded again.
constexpr std::size_t kKeptPrograms = 16;

// How long a job's first failed process that failed as a consequence (a
// peer's connection broke) waits for the cause: another process's failure
// or a node's death.
constexpr auto kRootCauseGrace = std::chrono::milliseconds(1000);

std::string new_job_id() {
  std::random_device random;
  char id[32];
  std::snprintf(id, sizeof id, "job-%08x%04x", random(), random() & 0xffff);
  return id;
}

}  // namespace

JobTable::JobTable(JobStore& store, ProgramStore& programs, NodeRegistry& nodes, std::string token,
                   int job_history, std::string checkpoint_base)
    : store_(store),
      programs_(programs),
      nodes_(nodes),
      token_(std::move(token)),
      job_history_(static_cast<std::size_t>(job_history)),
      checkpoint_base_(std::move(checkpoint_base)) {
  load();
}

JobTable::~JobTable() = default;

std::string JobTable::submit(const rpc::SubmitRequest& request) {
  auto job = std::make_unique<Job>();
  job->request = request;
  job->info.set_job_id(new_job_id());
  job->info.set_name(request.name());
  job->info.set_state(rpc::JobInfo::PENDING);
  job->info.set_submitted_at_ms(now_ms());
  *job->info.mutable_chains() = request.chains();
  *job->info.mutable_edges() = request.edges();
  // Recorded before it is known: a submit the database refuses leaves no job.
  persist(*job);
  const std::string id = job->info.job_id();
  spdlog::info("job {} ({}) submitted", id, job->info.name());
  jobs_[id] = std::move(job);
  schedule_pending();
  return id;
}

void JobTable::schedule_pending() {
  std::vector<Job*> pending;
  const std::int64_t now = now_ms();
  for (auto& [id, job] : jobs_) {
    if (job->info.state() == rpc::JobInfo::PENDING && job->restart_at_ms <= now) {
      pending.push_back(job.get());
    }
  }
  std::sort(pending.begin(), pending.end(), [](const Job* a, const Job* b) {
    return a->info.submitted_at_ms() < b->info.submitted_at_ms();
  });
  for (Job* job : pending) {
    if (auto reason = place(*job)) {
      job->info.set_pending_reason(*reason);
      continue;
    }
    job->info.set_state(rpc::JobInfo::RUNNING);
    job->info.clear_pending_reason();
    job->info.set_started_at_ms(now_ms());
    job->info.set_last_progress_ms(job->info.started_at_ms());
    job->info.clear_nodes();
    for (std::size_t p = 0; p < job->processes.size(); ++p) {
      const std::string& node = job->processes[p].node_id;
      if (std::find(job->info.nodes().begin(), job->info.nodes().end(), node) ==
          job->info.nodes().end()) {
        job->info.add_nodes(node);
      }
      rpc::WorkerCommand command;
      command.mutable_prepare()->set_job_id(job->info.job_id());
      command.mutable_prepare()->set_process_index(static_cast<int>(p));
      command.mutable_prepare()->set_attempt(job->attempt);
      nodes_.send(job->processes[p].node_id, std::move(command));
    }
    save(*job);
    spdlog::info("job {} placed on {} task processes", job->info.job_id(), job->processes.size());
  }
}

// Places every instance of `job`, or says why it cannot run yet.
std::optional<std::string> JobTable::place(Job& job) {
  if (!nodes_.any_alive()) return "no worker node has joined the cluster";
  Assignment assignment = assign(job.request, nodes_.free_rooms());
  if (!assignment.placed()) return "waiting for " + assignment.stuck;
  ProcessLayout layout = lay_out_processes(assignment.holds, job.request);
  for (auto& process : layout.processes) {
    job.processes.push_back(Process{.node_id = std::move(process.node_id),
                                    .gpus = std::move(process.gpus),
                                    .memory = process.memory_bytes});
  }
  job.process_of_task = std::move(layout.process_of_task);
  job.gpus_of_task = std::move(layout.gpus_of_task);
  nodes_.hold(assignment.holds);
  job.holds = std::move(assignment.holds);
  return std::nullopt;
}

bool JobTable::contains(const std::string& job_id) const { return find(job_id) != nullptr; }

std::optional<rpc::JobInfo> JobTable::info(const std::string& job_id) const {
  const Job* job = find(job_id);
  if (job == nullptr) return std::nullopt;
  return job->with_live_statistics();
}

std::vector<const JobTable::Job*> JobTable::newest_first() const {
  std::vector<const Job*> ordered;
  for (const auto& [id, job] : jobs_) ordered.push_back(job.get());
  std::sort(ordered.begin(), ordered.end(), [](const Job* a, const Job* b) {
    return a->info.submitted_at_ms() > b->info.submitted_at_ms();
  });
  return ordered;
}

std::vector<rpc::JobInfo> JobTable::list(std::int64_t ended_after_ms) const {
  std::vector<rpc::JobInfo> infos;
  for (const Job* job : newest_first()) {
    const std::int64_t finished = job->info.finished_at_ms();
    if (is_final(job->info.state()) && finished > 0 && finished <= ended_after_ms) continue;
    infos.push_back(job->with_live_statistics());
  }
  return infos;
}

std::vector<rpc::JobInfo> JobTable::summaries() const {
  std::vector<rpc::JobInfo> infos;
  for (const Job* job : newest_first()) infos.push_back(job->summary());
  return infos;
}

std::vector<rpc::JobInfo> JobTable::unfinished() const {
  std::vector<rpc::JobInfo> infos;
  for (const auto& [id, job] : jobs_) {
    if (!is_final(job->info.state())) infos.push_back(job->info);
  }
  return infos;
}

std::optional<std::string> JobTable::prepared(const rpc::PreparedReport& report) {
  Process* process = find_process(report.job_id(), report.attempt(), report.process_index());
  if (process == nullptr) return std::nullopt;  // the job was forgotten meanwhile
  if (process->node_id != report.node_id()) {
    return "node '" + report.node_id() + "' reported process " +
           std::to_string(report.process_index()) + " of job " + report.job_id() +
           ", which runs on node '" + process->node_id + "'";
  }
  Job& job = *find(report.job_id());
  if (is_final(job.info.state())) return std::nullopt;  // failed or stopped meanwhile
  if (!report.error().empty()) {
    fail(job, "node '" + process->node_id +
                  "' could not prepare a task process: " + cut_text(report.error()));
    settle_if_ended(job);
    return std::nullopt;
  }
  process->data_address = report.data_address();
  process->prepared = true;
  if (std::all_of(job.processes.begin(), job.processes.end(),
                  [](const Process& p) { return p.prepared; })) {
    start_processes(job);
  }
  return std::nullopt;
}

void JobTable::progress(const rpc::ProgressReport& report) {
  Process* process = find_process(report.job_id(), report.attempt(), report.process_index());
  if (process == nullptr || process->exited) return;
  const auto records = [](const google::protobuf::RepeatedPtrField<rpc::InstanceStats>& live) {
    std::uint64_t sum = 0;
    for (const auto& stats : live) sum += stats.records_in() + stats.records_out();
    return sum;
  };
  if (records(report.instances()) > records(process->live)) {
    find(report.job_id())->info.set_last_progress_ms(now_ms());
  }
  process->live = report.instances();
  process->resident_bytes = report.resident_bytes();
}

void JobTable::exited(const rpc::ExitReport& report) {
  Process* process = find_process(report.job_id(), report.attempt(), report.process_index());
  if (process == nullptr || process->exited) return;
  Job& job = *find(report.job_id());
  process->exited = true;
  process->live.Clear();
  for (const auto& stats : report.instances()) *job.info.add_instances() = stats;
  sort_instances(job.info.mutable_instances());
  // The exits of a run being ended for a restart are not failures.
  if (report.exit_code() != 0 && !job.stop_requested && !is_final(job.info.state()) &&
      !job.restarting) {
    const std::string error = report.error().empty()
                                  ? "the task process on node '" + process->node_id +
                                        "' exited with code " + std::to_string(report.exit_code())
                                  : cut_text(report.error());
    record_process_failure(job, report.process_index(), error);
    if (!report.consequence() || report.over_memory_limit()) {
      fail(job, error);  // a cause is the job's error, over anything held
    } else if (job.held_error.empty()) {
      // A consequence (a peer's connection broke) is held until a cause
      // arrives, every process has ended, or kRootCauseGrace passed: the
      // process that failed first, or the node that died, is the cause
      // to report, and its peers may well report before it.
      job.held_error = error;
      job.held_since_ms = now_ms();
    }
  }
  settle_if_ended(job);
}

std::optional<rpc::JobInfo> JobTable::stop(const std::string& job_id) {
  Job* job = find(job_id);
  if (job == nullptr) return std::nullopt;
  if (!is_final(job->info.state())) {
    job->stop_requested = true;
    if (job->processes.empty()) {
      finish(*job, rpc::JobInfo::STOPPED, "");
    } else {
      send_stop(*job);
      job->end_unstarted_processes();
      settle_if_ended(*job);
    }
  }
  return job->with_live_statistics();
}

void JobTable::node_died(const std::string& node_id, const std::string& why) {
  nodes_.mark_dead(node_id);
  spdlog::warn("{}", why);
  for (auto& [id, job] : jobs_) {
    // A dead node's reservations are void: a later release must not take
    // them from the node when it joins again.
    std::erase_if(job->holds, [&](const Hold& hold) { return hold.node_id == node_id; });
    bool involved = false;
    for (auto& p : job->processes) {
      if (p.node_id == node_id && !p.exited) {
        p.exited = true;
        involved = true;
      }
    }
    if (!involved) continue;
    // Also a job that failed already and waits for its processes' exits.
    fail(*job, why + "; its task processes are lost");
    settle_if_ended(*job);
  }
}

void JobTable::fail_overdue(std::int64_t now_ms) {
  for (auto& [id, job] : jobs_) {
    if (!job->held_error.empty() && now_ms - job->held_since_ms >= kRootCauseGrace.count()) {
      fail(*job, job->held_error);
      settle_if_ended(*job);
    }
  }
}

std::vector<std::string> JobTable::take_forgotten() {
  std::vector<const Job*> ended;
  for (const auto& [id, job] : jobs_) {
    if (is_final(job->info.state()) && job->all_exited()) ended.push_back(job.get());
  }
  if (ended.size() <= job_history_) return {};
  std::sort(ended.begin(), ended.end(), [](const Job* a, const Job* b) {
    return std::pair(a->info.finished_at_ms(), a->info.job_id()) <
           std::pair(b->info.finished_at_ms(), b->info.job_id());
  });
  std::vector<std::string> ids;
  for (std::size_t i = 0; i < ended.size() - job_history_; ++i) {
    ids.push_back(ended[i]->info.job_id());
  }
  for (const auto& id : ids) {
    discard_checkpoints(*jobs_.at(id));
    jobs_.erase(id);
  }
  return ids;
}

JobTable::Job* JobTable::find(const std::string& job_id) const {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : it->second.get();
}

JobTable::Process* JobTable::find_process(const std::string& job_id, int attempt, int index) {
  Job* job = find(job_id);
  if (job == nullptr || job->attempt != attempt || index < 0 ||
      index >= static_cast<int>(job->processes.size())) {
    return nullptr;
  }
  return &job->processes[index];
}

void JobTable::start_processes(Job& job) {
  TaskAssignment assignment;
  assignment.job_id = job.info.job_id();
  assignment.token = token_;
  assignment.fingerprint = job.request.fingerprint();
  assignment.process_of_task = job.process_of_task;
  assignment.gpus_of_task = job.gpus_of_task;
  for (const auto& p : job.processes) assignment.data_addresses.push_back(p.data_address);
  assignment.attempt = job.attempt;
  if (job.checkpointed()) {
    std::vector<checkpoint::TaskKey> tasks;
    for (int chain = 0; chain < job.request.chains_size(); ++chain) {
      for (int i = 0; i < job.request.chains(chain).parallelism(); ++i) tasks.push_back({chain, i});
    }
    const std::string& directory = job.request.checkpoints().directory();
    const std::string root = checkpoint::job_checkpoint_root(
        directory.empty() ? checkpoint_base_ : directory, job.info.job_id());
    job.checkpoints = std::make_unique<JobCheckpoints>(
        job.request.checkpoints(), job.info.job_id(), job.request.fingerprint(), job.attempt, root,
        std::move(tasks), static_cast<int>(job.processes.size()), job.next_checkpoint_id);
    assignment.checkpoints = true;
    // A directory the job names is shared by every node; else the head keeps it.
    if (!job.request.checkpoints().directory().empty()) assignment.checkpoint_root = root;
    assignment.restore_checkpoint = job.restore_from;
  }
  for (std::size_t p = 0; p < job.processes.size(); ++p) {
    assignment.process_index = static_cast<int>(p);
    assignment.node_id = job.processes[p].node_id;
    rpc::WorkerCommand command;
    auto* start = command.mutable_start();
    start->set_job_id(job.info.job_id());
    start->set_process_index(static_cast<int>(p));
    start->set_attempt(job.attempt);
    start->set_program_sha256(job.request.program_sha256());
    *start->mutable_args() = job.request.args();
    start->set_working_directory(job.request.working_directory());
    start->set_bundle_sha256(job.request.bundle_sha256());
    *start->mutable_environment() = job.request.environment();
    start->set_assignment(assignment.encode());
    for (int g : job.processes[p].gpus) start->add_gpu_indices(g);
    start->set_memory_limit_bytes(job.processes[p].memory);
    nodes_.send(job.processes[p].node_id, std::move(command));
    job.processes[p].started = true;
  }
}

// Tells every node still running the job's processes to end them: drained
// for a stop the user asked for, killed at once when the job failed.
void JobTable::send_stop(const Job& job) {
  std::set<std::string> sent;
  for (const auto& p : job.processes) {
    if (p.exited || !sent.insert(p.node_id).second) continue;
    rpc::WorkerCommand command;
    command.mutable_stop()->set_job_id(job.info.job_id());
    command.mutable_stop()->set_attempt(job.attempt);
    command.mutable_stop()->set_drain(job.stop_requested &&
                                      job.info.state() != rpc::JobInfo::FAILED);
    nodes_.send(p.node_id, std::move(command));
  }
}

void JobTable::fail(Job& job, std::string error,
                    bool may_restart) {  // by value: it may be held_error
  job.held_error.clear();
  if (is_final(job.info.state()) || job.restarting) return;
  if (may_restart && job.checkpointed() && !job.stop_requested &&
      job.info.restarts() < job.request.checkpoints().restart_attempts()) {
    begin_restart(job, error);
    return;
  }
  spdlog::warn("job {} failed: {}", job.info.job_id(), error);
  finish(job, rpc::JobInfo::FAILED, error);
  send_stop(job);
  job.end_unstarted_processes();
}

// Once every process of the job has ended: its final state (or its next
// run), and its resources back to the nodes for the jobs that wait.
void JobTable::settle_if_ended(Job& job) {
  // A job waiting to be placed (first, or again after a restart) has no
  // processes to settle: its last run was settled already.
  if (job.info.state() == rpc::JobInfo::PENDING || !job.all_exited()) return;
  if (!job.held_error.empty()) fail(job, job.held_error);
  if (job.restarting) {
    end_restart(job);
    return;
  }
  if (!is_final(job.info.state())) {
    finish(job, job.stop_requested ? rpc::JobInfo::STOPPED : rpc::JobInfo::FINISHED, "");
  }
  // A job that ended well committed its output with its final checkpoint:
  // nothing will restore its checkpoints. A failed job's stay until it is
  // forgotten.
  if (job.info.state() != rpc::JobInfo::FAILED) discard_checkpoints(job);
  release(job);
  schedule_pending();
}

void JobTable::finish(Job& job, rpc::JobInfo::State state, const std::string& error) {
  job.info.set_state(state);
  job.info.set_error(error);
  job.info.set_finished_at_ms(now_ms());
  save(job);
}

void JobTable::release(Job& job) {
  nodes_.release(job.holds);
  job.holds.clear();
  // The programs of jobs that are over may go, beyond the most recent few.
  std::set<std::string> in_use;
  for (const auto& [id, other] : jobs_) {
    if (is_final(other->info.state())) continue;
    in_use.insert(other->request.program_sha256());
    if (!other->request.bundle_sha256().empty()) in_use.insert(other->request.bundle_sha256());
  }
  if (const auto removed = programs_.prune(kKeptPrograms, in_use); removed > 0) {
    spdlog::info("removed {} stored programs no job needs", removed);
  }
}

// A failed task process's error in the job's output (`sage job logs`, the
// submitting program's output) and in the head's log.
void JobTable::record_process_failure(const Job& job, int process_index, const std::string& error) {
  const std::string what = fmt::format("task process {} on node '{}' failed: {}", process_index,
                                       job.processes[process_index].node_id, error);
  spdlog::warn("job {}: {}", job.info.job_id(), what);
  try {
    store_.append_logs(job.info.job_id(), {"[sage] " + what});
  } catch (const Error& e) {
    spdlog::error("job {}: cannot add to its output: {}", job.info.job_id(), e.what());
  }
}

// Throws sage::Error when the job database refuses the record.
void JobTable::persist(const Job& job) {
  JobRecord record;
  record.id = job.info.job_id();
  record.name = job.info.name();
  record.state = job.info.state();
  record.error = job.info.error();
  record.fingerprint = job.request.fingerprint();
  record.program_hash = job.request.program_sha256();
  record.args.assign(job.request.args().begin(), job.request.args().end());
  record.submitted_at_ms = job.info.submitted_at_ms();
  record.started_at_ms = job.info.started_at_ms();
  record.finished_at_ms = job.info.finished_at_ms();
  // With the job's last checkpoint (CheckpointSummary): jobs.db records it.
  rpc::JobInfo recorded = job.info;
  if (job.has_checkpoint_figures()) {
    *recorded.mutable_checkpoints() = job.checkpoint_summary();
  }
  record.statistics = recorded.SerializeAsString();
  store_.put(record);
}

// A change of a known job: kept in memory, and logged, when the database
// refuses it (the job goes on; its record is stale until the next change).
void JobTable::save(const Job& job) {
  try {
    persist(job);
  } catch (const Error& e) {
    spdlog::error("job {}: cannot record its state {}: {}", job.info.job_id(),
                  rpc::JobInfo::State_Name(job.info.state()), e.what());
  }
}

void JobTable::load() {
  for (const JobRecord& record : store_.list()) {
    auto job = std::make_unique<Job>();
    job->info.ParseFromString(record.statistics);
    // The state column is the truth: records of heads from before states
    // were typed hold the state as text in field 3, which parses as unknown.
    job->info.DiscardUnknownFields();
    job->info.set_state(record.state);
    job->request.set_name(record.name);
    job->request.set_fingerprint(record.fingerprint);
    job->request.set_program_sha256(record.program_hash);
    // Kept whole, since saving the job again writes the record from it.
    job->request.mutable_args()->Assign(record.args.begin(), record.args.end());
    if (!is_final(job->info.state())) {
      job->info.set_state(rpc::JobInfo::FAILED);
      job->info.set_error("the head restarted while the job ran");
      job->info.set_finished_at_ms(now_ms());
      persist(*job);
    }
    jobs_[record.id] = std::move(job);
  }
}

void remove_forgotten(JobStore& store, const std::vector<std::string>& job_ids, int job_history) {
  if (job_ids.empty()) return;
  try {
    for (const auto& id : job_ids) store.remove(id);
  } catch (const Error& e) {
    // They are forgotten again after a restart, when they load from the store.
    spdlog::error("cannot remove forgotten jobs from the job database: {}", e.what());
    return;
  }
  spdlog::info("forgot {} ended jobs and their output (beyond the history of {}, from {} to {})",
               job_ids.size(), job_history, job_ids.front(), job_ids.back());
}

}  // namespace sage::cluster
