#include "cluster/head.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "cluster/job_info.hpp"
#include "cluster/job_store.hpp"
#include "cluster/program_store.hpp"
#include "cluster/request_validation.hpp"
#include "cluster/task_process.hpp"
#include "net/rpc.hpp"
#include "sage.grpc.pb.h"
#include "sage/error.hpp"

namespace sage::cluster {
namespace {

// Stored programs kept beyond those of pending and running jobs, most
// recently used first: a resubmitted program need not be uploaded again.
constexpr std::size_t kKeptPrograms = 16;

using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;

// How often a blocked stream checks whether its client went away (a worker
// that dies is noticed this fast), and how often nodes and jobs are checked.
constexpr auto kStreamPoll = std::chrono::milliseconds(50);
constexpr auto kMonitorInterval = std::chrono::milliseconds(100);
// How long a job's first failed process that failed as a consequence (a
// peer's connection broke) waits for the cause: another process's failure
// or a node's death.
constexpr auto kRootCauseGrace = std::chrono::milliseconds(1000);

std::string describe_resources(double cpus, int gpus, std::uint64_t memory) {
  char text[128];
  std::snprintf(text, sizeof text, "%g CPUs, %d GPUs, %llu MiB memory", cpus, gpus,
                static_cast<unsigned long long>(memory >> 20));
  return text;
}

std::string new_job_id() {
  std::random_device random;
  char id[32];
  std::snprintf(id, sizeof id, "job-%08x%04x", random(), random() & 0xffff);
  return id;
}

Status invalid(const std::string& message) { return {StatusCode::INVALID_ARGUMENT, message}; }

}  // namespace

class Head::Impl final : public rpc::JobManager::Service, public rpc::ClusterService::Service {
 public:
  explicit Impl(HeadOptions options)
      : options_(std::move(options)),
        programs_(options_.state_dir + "/programs"),
        store_(options_.state_dir + "/jobs.db", options_.max_job_output_bytes) {
    if (options_.job_history < 1) {
      throw Error("the head's job history must keep at least 1 job; pass --job-history 1 or more");
    }
    if (options_.max_instances_per_job < 1 ||
        options_.max_instances_per_job > kMaxInstancesPerJobLimit) {
      throw Error(fmt::format("--max-instances-per-job is {}; it must be 1 to {}",
                              options_.max_instances_per_job, kMaxInstancesPerJobLimit));
    }
    load_jobs();
    remove_from_store(take_forgotten_jobs());  // a lowered --job-history
    grpc::ServerBuilder jobs_builder, cluster_builder;
    net::configure_server(jobs_builder);
    net::configure_server(cluster_builder);
    jobs_builder.AddListeningPort(options_.host + ":" + std::to_string(options_.jobmanager_port),
                                  net::server_credentials(options_.tls), &jobmanager_port_);
    jobs_builder.RegisterService(static_cast<rpc::JobManager::Service*>(this));
    cluster_builder.AddListeningPort(options_.host + ":" + std::to_string(options_.cluster_port),
                                     net::server_credentials(options_.tls), &cluster_port_);
    cluster_builder.RegisterService(static_cast<rpc::ClusterService::Service*>(this));
    jobs_server_ = jobs_builder.BuildAndStart();
    if (!jobs_server_ || jobmanager_port_ == 0) {
      throw Error("cannot listen on " + options_.host + ":" +
                  std::to_string(options_.jobmanager_port) +
                  " (JobManager): the port is in use or the address is not local; stop the "
                  "other process or pass --jobmanager-port");
    }
    cluster_server_ = cluster_builder.BuildAndStart();
    if (!cluster_server_ || cluster_port_ == 0) {
      jobs_server_->Shutdown();
      throw Error("cannot listen on " + options_.host + ":" +
                  std::to_string(options_.cluster_port) +
                  " (cluster service): the port is in use or the address is not local; stop "
                  "the other process or pass --port");
    }
    monitor_ = std::thread([this] { monitor_nodes(); });
  }

  ~Impl() override {
    shutdown();
    if (monitor_.joinable()) monitor_.join();
  }

  int cluster_port() const { return cluster_port_; }
  int jobmanager_port() const { return jobmanager_port_; }

  void wait() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return shutting_down_; });
  }

  void shutdown() {
    {
      std::lock_guard lock(mutex_);
      if (shutting_down_) return;
      shutting_down_ = true;
      changed_.notify_all();
    }
    const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(2);
    if (jobs_server_) jobs_server_->Shutdown(deadline);
    if (cluster_server_) cluster_server_->Shutdown(deadline);
  }

  // ---- JobManager ---------------------------------------------------------

  Status HasProgram(ServerContext* context, const rpc::ProgramRef* request,
                    rpc::HasProgramReply* reply) override {
    return serve("HasProgram", context, [&]() -> Status {
      if (auto problem = problem_in(*request)) return invalid(*problem);
      reply->set_present(programs_.contains(request->sha256()));
      programs_.touch(request->sha256());  // kept until the submit that follows
      return Status::OK;
    });
  }

  Status UploadProgram(ServerContext* context, grpc::ServerReader<rpc::ProgramChunk>* reader,
                       rpc::ProgramRef* reply) override {
    return serve("UploadProgram", context, [&]() -> Status {
      rpc::ProgramChunk chunk;
      std::unique_ptr<ProgramStore::Upload> upload;  // abandoned: its file goes
      std::uint64_t received = 0;
      try {
        while (reader->Read(&chunk)) {
          received += chunk.data().size();
          if (received > options_.max_program_bytes) {
            return {StatusCode::RESOURCE_EXHAUSTED,
                    fmt::format("the program is larger than this head takes ({:.1f} MiB); start "
                                "the head with a larger --max-program-size",
                                static_cast<double>(options_.max_program_bytes) / (1 << 20))};
          }
          if (!upload) {
            if (!ProgramStore::is_valid_hash(chunk.sha256())) {
              return invalid("the first chunk must name the program's sha256 (64 hex digits)");
            }
            upload = programs_.begin_upload(chunk.sha256());
            reply->set_sha256(chunk.sha256());
          }
          upload->append(chunk.data());
        }
        if (!upload) return invalid("empty program upload");
        upload->commit();
      } catch (const Error& e) {
        return invalid(e.what());
      }
      return Status::OK;
    });
  }

  Status SubmitJob(ServerContext* context, const rpc::SubmitRequest* request,
                   rpc::SubmitReply* reply) override {
    return serve("SubmitJob", context, [&]() -> Status {
      if (auto problem = problem_in(*request, options_.max_instances_per_job)) {
        return invalid(*problem);
      }
      if (!programs_.contains(request->program_sha256())) {
        return {StatusCode::FAILED_PRECONDITION,
                "program " + request->program_sha256() + " was not uploaded"};
      }
      std::lock_guard lock(mutex_);
      if (auto never = never_fits(*request)) {
        return {StatusCode::RESOURCE_EXHAUSTED, *never};
      }
      auto job = std::make_unique<Job>();
      job->request = *request;
      job->info.set_job_id(new_job_id());
      job->info.set_name(request->name());
      job->info.set_state(rpc::JobInfo::PENDING);
      job->info.set_submitted_at_ms(now_ms());
      // Recorded before it is known: a submit the database refuses leaves no job.
      persist(*job);
      reply->set_job_id(job->info.job_id());
      spdlog::info("job {} ({}) submitted", job->info.job_id(), job->info.name());
      jobs_[job->info.job_id()] = std::move(job);
      schedule_pending();
      return Status::OK;
    });
  }

  Status WatchJob(ServerContext* context, const rpc::WatchRequest* request,
                  grpc::ServerWriter<rpc::JobEvent>* writer) override {
    return serve("WatchJob", context, [&]() -> Status {
      if (auto problem = problem_in(*request)) return invalid(*problem);
      std::int64_t next_line = request->from_line();
      std::unique_lock lock(mutex_);
      if (!jobs_.count(request->job_id())) return unknown_job(request->job_id());
      while (true) {
        auto it = jobs_.find(request->job_id());
        if (it == jobs_.end()) return forgotten_job(request->job_id());
        const bool final = is_final(it->second->info.state());
        rpc::JobInfo info = it->second->info;
        lock.unlock();
        LogPage page = store_.logs(request->job_id(), next_line, 10'000);
        if (page.first_line > next_line) {
          rpc::JobEvent event;
          event.set_output_line(discarded_lines_notice(page.first_line - next_line));
          if (!writer->Write(event)) return Status::OK;
          next_line = page.first_line;
        }
        for (auto& line : page.lines) {
          rpc::JobEvent event;
          event.set_output_line(std::move(line));
          if (!writer->Write(event)) return Status::OK;
          ++next_line;
        }
        const bool caught_up = next_line >= store_.log_line_count(request->job_id());
        if (caught_up && (final || !request->follow())) {
          // The lines read may have been cut short by the job being forgotten.
          if (std::lock_guard relock(mutex_); !jobs_.count(request->job_id())) {
            return forgotten_job(request->job_id());
          }
          rpc::JobEvent event;
          *event.mutable_state() = info;
          writer->Write(event);
          return Status::OK;
        }
        lock.lock();
        if (caught_up) {
          changed_.wait_for(lock, kStreamPoll);
          if (context->IsCancelled()) return Status::OK;
          if (shutting_down_) {
            return {StatusCode::ABORTED,
                    "the head shut down while the job was followed; a job running then is "
                    "FAILED when the head restarts"};
          }
        }
      }
    });
  }

  Status ListJobs(ServerContext* context, const rpc::Empty*, rpc::JobList* reply) override {
    return serve("ListJobs", context, [&]() -> Status {
      std::lock_guard lock(mutex_);
      std::vector<const Job*> ordered;
      for (const auto& [id, job] : jobs_) ordered.push_back(job.get());
      std::sort(ordered.begin(), ordered.end(), [](const Job* a, const Job* b) {
        return a->info.submitted_at_ms() > b->info.submitted_at_ms();
      });
      for (const Job* job : ordered) *reply->add_jobs() = with_live_statistics(*job);
      return Status::OK;
    });
  }

  Status GetJob(ServerContext* context, const rpc::JobRef* request, rpc::JobInfo* reply) override {
    return serve("GetJob", context, [&]() -> Status {
      if (auto problem = problem_in(*request)) return invalid(*problem);
      std::lock_guard lock(mutex_);
      auto it = jobs_.find(request->job_id());
      if (it == jobs_.end()) return unknown_job(request->job_id());
      *reply = with_live_statistics(*it->second);
      return Status::OK;
    });
  }

  Status StopJob(ServerContext* context, const rpc::JobRef* request, rpc::JobInfo* reply) override {
    return serve("StopJob", context, [&]() -> Status {
      if (auto problem = problem_in(*request)) return invalid(*problem);
      std::lock_guard lock(mutex_);
      auto it = jobs_.find(request->job_id());
      if (it == jobs_.end()) return unknown_job(request->job_id());
      Job& job = *it->second;
      if (!is_final(job.info.state())) {
        job.stop_requested = true;
        if (job.processes.empty()) {
          finish(job, rpc::JobInfo::STOPPED, "");
        } else {
          send_stop(job);
          end_unstarted_processes(job);
          settle_if_ended(job);
        }
      }
      *reply = job.info;
      return Status::OK;
    });
  }

  Status ClusterStatus(ServerContext* context, const rpc::Empty*,
                       rpc::ClusterInfo* reply) override {
    return serve("ClusterStatus", context, [&]() -> Status {
      std::lock_guard lock(mutex_);
      for (const auto& [id, node] : nodes_) {
        auto* info = reply->add_nodes();
        info->set_node_id(id);
        info->set_address(node.host);
        *info->mutable_total() = node.total;
        *info->mutable_used() = node.used;
        info->set_alive(node.alive);
        info->set_last_heartbeat_ms(node.last_heartbeat_ms);
      }
      for (const auto& [id, job] : jobs_) {
        if (!is_final(job->info.state())) *reply->add_running_jobs() = job->info;
      }
      return Status::OK;
    });
  }

  // ---- ClusterService -----------------------------------------------------

  Status Join(ServerContext* context, const rpc::JoinRequest* request,
              grpc::ServerWriter<rpc::WorkerCommand>* writer) override {
    return serve("Join", context, [&]() -> Status {
      if (auto problem = problem_in(*request)) return invalid(*problem);
      std::uint64_t session = 0;
      {
        std::lock_guard lock(mutex_);
        auto it = nodes_.find(request->node_id());
        if (it != nodes_.end() && it->second.alive) {
          return {StatusCode::ALREADY_EXISTS,
                  "node '" + request->node_id() +
                      "' is already in the cluster; give each worker its own --node-id"};
        }
        Node& node = nodes_[request->node_id()];
        node = Node{};
        node.host = request->host();
        node.total = request->resources();
        node.used.Clear();
        node.gpu_used.assign(static_cast<std::size_t>(request->resources().num_gpus()), false);
        node.alive = true;
        node.last_heartbeat_ms = now_ms();
        node.session = session = ++sessions_;
        spdlog::info("node {} joined from {} with {}", request->node_id(), request->host(),
                     describe_resources(node.total.num_cpus(), node.total.num_gpus(),
                                        node.total.memory_bytes()));
        schedule_pending();
      }
      rpc::WorkerCommand welcome;
      welcome.mutable_welcome()->set_head_version(SAGE_VERSION);
      if (!writer->Write(welcome)) return Status::OK;
      std::unique_lock lock(mutex_);
      while (true) {
        auto it = nodes_.find(request->node_id());
        if (it == nodes_.end() || it->second.session != session || !it->second.alive) break;
        Node& node = it->second;
        if (node.commands.empty()) {
          changed_.wait_for(lock, kStreamPoll);
          if (context->IsCancelled() || shutting_down_) break;
          continue;
        }
        rpc::WorkerCommand command = std::move(node.commands.front());
        node.commands.pop_front();
        lock.unlock();
        const bool sent = writer->Write(command);
        lock.lock();
        if (!sent) break;
      }
      auto it = nodes_.find(request->node_id());
      if (it != nodes_.end() && it->second.session == session && it->second.alive &&
          !shutting_down_) {
        node_died(request->node_id(),
                  "the worker on node '" + request->node_id() + "' disconnected");
      }
      return Status::OK;
    });
  }

  Status Heartbeat(ServerContext* context, const rpc::NodeRef* request, rpc::Empty*) override {
    return serve("Heartbeat", context, [&]() -> Status {
      if (auto problem = problem_in(*request)) return invalid(*problem);
      std::lock_guard lock(mutex_);
      auto it = nodes_.find(request->node_id());
      if (it == nodes_.end() || !it->second.alive) {
        return {StatusCode::NOT_FOUND, "node '" + request->node_id() + "' must join again"};
      }
      it->second.last_heartbeat_ms = now_ms();
      return Status::OK;
    });
  }

  Status ReportPrepared(ServerContext* context, const rpc::PreparedReport* request,
                        rpc::Empty*) override {
    return serve("ReportPrepared", context, [&]() -> Status {
      if (auto problem = problem_in(*request)) return invalid(*problem);
      std::lock_guard lock(mutex_);
      Process* process = find_process(request->job_id(), request->process_index());
      if (process == nullptr) return Status::OK;  // the job was forgotten meanwhile
      if (process->node_id != request->node_id()) {
        return invalid("node '" + request->node_id() + "' reported process " +
                       std::to_string(request->process_index()) + " of job " + request->job_id() +
                       ", which runs on node '" + process->node_id + "'");
      }
      Job& job = *jobs_.at(request->job_id());
      if (is_final(job.info.state())) return Status::OK;  // failed or stopped meanwhile
      if (!request->error().empty()) {
        fail(job, "node '" + process->node_id +
                      "' could not prepare a task process: " + cut_text(request->error()));
        settle_if_ended(job);
        return Status::OK;
      }
      process->data_address = request->data_address();
      process->prepared = true;
      if (std::all_of(job.processes.begin(), job.processes.end(),
                      [](const Process& p) { return p.prepared; })) {
        start_processes(job);
      }
      return Status::OK;
    });
  }

  Status ReportOutput(ServerContext* context, const rpc::OutputReport* request,
                      rpc::Empty*) override {
    return serve("ReportOutput", context, [&]() -> Status {
      if (auto problem = problem_in(*request)) return invalid(*problem);
      if (request->lines_size() > 0) {
        // The store takes no output for a job it has no record of (one forgotten).
        if (!store_.append_logs(
                request->job_id(),
                std::vector<std::string>(request->lines().begin(), request->lines().end()))) {
          return unknown_job(request->job_id());
        }
        std::lock_guard lock(mutex_);
        changed_.notify_all();
      }
      return Status::OK;
    });
  }

  Status ReportProgress(ServerContext* context, const rpc::ProgressReport* request,
                        rpc::Empty*) override {
    return serve("ReportProgress", context, [&]() -> Status {
      if (auto problem = problem_in(*request)) return invalid(*problem);
      std::lock_guard lock(mutex_);
      Process* process = find_process(request->job_id(), request->process_index());
      if (process != nullptr && !process->exited) process->live = request->instances();
      return Status::OK;
    });
  }

  Status ReportExit(ServerContext* context, const rpc::ExitReport* request, rpc::Empty*) override {
    return serve("ReportExit", context, [&]() -> Status {
      if (auto problem = problem_in(*request)) return invalid(*problem);
      std::lock_guard lock(mutex_);
      Process* process = find_process(request->job_id(), request->process_index());
      if (process == nullptr || process->exited) return Status::OK;
      Job& job = *jobs_.at(request->job_id());
      process->exited = true;
      process->live.Clear();
      for (const auto& stats : request->instances()) *job.info.add_instances() = stats;
      sort_instances(job.info.mutable_instances());
      if (request->exit_code() != 0 && !job.stop_requested && !is_final(job.info.state())) {
        const std::string error = request->error().empty()
                                      ? "the task process on node '" + process->node_id +
                                            "' exited with code " +
                                            std::to_string(request->exit_code())
                                      : cut_text(request->error());
        record_process_failure(job, request->process_index(), error);
        if (!request->consequence() || request->over_memory_limit()) {
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
      return Status::OK;
    });
  }

  Status FetchProgram(ServerContext* context, const rpc::ProgramRef* request,
                      grpc::ServerWriter<rpc::ProgramChunk>* writer) override {
    return serve("FetchProgram", context, [&]() -> Status {
      if (auto problem = problem_in(*request)) return invalid(*problem);
      if (!programs_.contains(request->sha256())) {
        return {StatusCode::NOT_FOUND, "no program " + request->sha256().substr(0, 64)};
      }
      std::FILE* file = std::fopen(programs_.path_of(request->sha256()).c_str(), "rb");
      if (file == nullptr) return {StatusCode::INTERNAL, "cannot read the stored program"};
      std::string buffer(net::kProgramChunkBytes, '\0');
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

 private:
  // Runs an RPC's handler for a caller with the cluster token. An exception
  // that escapes it (a damaged job database, a bug) is logged, naming the
  // RPC, and the caller gets INTERNAL with its message.
  template <class Handler>
  Status serve(const char* rpc, ServerContext* context, Handler&& handler) {
    if (auto s = net::check_token(*context, options_.token); !s.ok()) return s;
    try {
      return handler();
    } catch (const std::exception& e) {
      spdlog::error("{} failed: {}", rpc, e.what());
      return {StatusCode::INTERNAL,
              std::string(rpc) + " failed on the head: " + e.what() + " (see the head's log)"};
    }
  }

  struct Node {
    std::string host;
    rpc::Resources total, used;
    std::vector<bool> gpu_used;
    bool alive = false;
    std::int64_t last_heartbeat_ms = 0;
    std::deque<rpc::WorkerCommand> commands;
    std::uint64_t session = 0;
  };
  // What one instance holds on its node, to give back when the job ends.
  struct Hold {
    std::string node_id;
    double cpus = 0;
    std::uint64_t memory = 0;
    std::vector<int> gpus;
  };
  struct Process {
    std::string node_id;
    std::string data_address;
    std::vector<int> gpus;
    std::uint64_t memory = 0;
    // Prepared: its worker reserved its data-plane port. Started: told to
    // start it, after which its worker reports its exit.
    bool prepared = false, started = false, exited = false;
    // Its instances' statistics from its last progress report, until it exits.
    google::protobuf::RepeatedPtrField<rpc::InstanceStats> live;
  };
  struct Job {
    rpc::JobInfo info;
    rpc::SubmitRequest request;
    std::vector<Process> processes;
    std::vector<int> process_of_task;
    std::vector<std::vector<int>> gpus_of_task;  // CUDA numbers in the task's process
    std::vector<Hold> holds;
    bool stop_requested = false;
    std::string held_error;  // the first process failure, until it is reported
    std::int64_t held_since_ms = 0;
  };

  static Status unknown_job(const std::string& id) {
    return {StatusCode::NOT_FOUND,
            "no job '" + id + "'; `sage job list` shows the jobs this head knows"};
  }
  Status forgotten_job(const std::string& id) const {
    return {StatusCode::NOT_FOUND,
            "job '" + id + "' was forgotten while being read: the head keeps the " +
                std::to_string(options_.job_history) +
                " jobs that ended last (sage cluster start --head --job-history)"};
  }

  std::string discarded_lines_notice(std::int64_t count) const {
    return "[sage] " + std::to_string(count) +
           fmt::format(
               " earlier output lines of this job were discarded: the head keeps the "
               "last {:.1f} MiB of each job's output (sage cluster start --head "
               "--max-job-output)",
               static_cast<double>(options_.max_job_output_bytes) / (1 << 20));
  }

  // REQUIRES: mutex_ held (all helpers below).
  std::optional<std::string> never_fits(const rpc::SubmitRequest& request) const {
    // The nodes that can run work, as they are when idle.
    std::map<std::string, Room> idle;
    for (const auto& [id, node] : nodes_) {
      if (node.alive && node.total.num_cpus() > 0) {
        idle[id] = Room{node.total, std::vector<bool>(node.gpu_used.size(), false)};
      }
    }
    if (idle.empty()) return std::nullopt;  // wait for workers: PENDING
    for (const auto& chain : request.chains()) {
      const auto& need = chain.resources();
      const std::string name = chain.operators().empty() ? "?" : chain.operators(0);
      bool fits_somewhere = false;
      std::string largest;
      double largest_cpus = -1;
      for (const auto& [id, room] : idle) {
        const auto& total = room.free;
        if (total.num_cpus() > largest_cpus) {
          largest_cpus = total.num_cpus();
          largest = "'" + id + "' has " +
                    describe_resources(total.num_cpus(), total.num_gpus(), total.memory_bytes());
        }
        if (total.num_cpus() >= need.num_cpus() && total.num_gpus() >= need.num_gpus() &&
            (total.memory_bytes() == 0 || total.memory_bytes() >= need.memory_bytes())) {
          fits_somewhere = true;
        }
      }
      if (!fits_somewhere) {
        return "operator '" + name + "' needs " +
               describe_resources(std::max(need.num_cpus(), 1.0), need.num_gpus(),
                                  need.memory_bytes()) +
               " per instance, but no node has that (the largest, " + largest +
               "); add a node with those resources or lower the operator's resources";
      }
    }
    // Each instance fits some node; the scheduler must also find room for all
    // of them at once on an idle cluster, or the job would wait forever.
    std::vector<Hold> holds;
    if (auto stuck = assign(request, idle, &holds)) {
      double cpus = 0;
      int gpus = 0;
      std::uint64_t memory = 0;
      for (const auto& chain : request.chains()) {
        if (!chain.reserves()) continue;
        cpus += chain.parallelism() * chain.resources().num_cpus();
        gpus += chain.parallelism() * chain.resources().num_gpus();
        memory += chain.parallelism() * chain.resources().memory_bytes();
      }
      std::string cluster;
      for (const auto& [id, room] : idle) {
        cluster += (cluster.empty() ? "'" : ", '") + id + "' " +
                   describe_resources(room.free.num_cpus(), room.free.num_gpus(),
                                      room.free.memory_bytes());
      }
      return "the job's instances need " + describe_resources(cpus, gpus, memory) +
             " in all and do not fit the cluster even when it is idle: there is no room left "
             "for " +
             *stuck + " (nodes: " + cluster +
             "); add nodes or lower the operators' parallelism or resources";
    }
    return std::nullopt;
  }

  // What a node has free while instances are being placed.
  struct Room {
    rpc::Resources free;
    std::vector<bool> gpu_used;
  };

  // The scheduler's choice of node for every instance of `request` (holds in
  // task order), given what each node has free. First it spreads: each
  // instance in task order on the node with the fewest of the job's
  // instances, then the most free CPU. Where that leaves an instance without
  // room, it packs: the instances that hold resources largest first, each on
  // the fitting node with the least free CPU (best fit), then the others.
  // Returns the instance that finds no room ("2 CPUs, ... for an instance of
  // 'X'") when neither works.
  std::optional<std::string> assign(const rpc::SubmitRequest& request,
                                    const std::map<std::string, Room>& room,
                                    std::vector<Hold>* holds) const {
    const auto spread = assign(request, room, /*pack=*/false, holds);
    if (!spread) return std::nullopt;
    holds->clear();
    if (!assign(request, room, /*pack=*/true, holds)) return std::nullopt;
    holds->clear();
    return spread;
  }

  std::optional<std::string> assign(const rpc::SubmitRequest& request,
                                    std::map<std::string, Room> room, bool pack,
                                    std::vector<Hold>* holds) const {
    struct Instance {
      const rpc::ChainSpec* chain;
      std::size_t task;
    };
    std::vector<Instance> order;
    for (const auto& chain : request.chains()) {
      for (int i = 0; i < chain.parallelism(); ++i) order.push_back({&chain, order.size()});
    }
    if (pack) {
      const auto size = [](const Instance& x) {
        const auto& r = x.chain->resources();
        return std::make_tuple(x.chain->reserves(), r.num_gpus(), r.num_cpus(), r.memory_bytes());
      };
      std::stable_sort(order.begin(), order.end(),
                       [&](const Instance& a, const Instance& b) { return size(a) > size(b); });
    }
    holds->assign(order.size(), Hold{});
    std::map<std::string, int> placed_here;
    for (const Instance& instance : order) {
      const auto& chain = *instance.chain;
      const auto& need = chain.resources();
      const bool reserve = chain.reserves();
      std::string best;
      for (const auto& [id, r] : room) {
        const auto& f = r.free;
        const bool fits =
            !reserve ||
            (f.num_cpus() + 1e-9 >= need.num_cpus() && f.num_gpus() >= need.num_gpus() &&
             (nodes_.at(id).total.memory_bytes() == 0 || f.memory_bytes() >= need.memory_bytes()));
        if (!fits) continue;
        const auto& b = best.empty() ? f : room.at(best).free;
        const bool better = pack && reserve ? f.num_cpus() < b.num_cpus()
                                            : placed_here[id] < placed_here[best] ||
                                                  (placed_here[id] == placed_here[best] &&
                                                   f.num_cpus() > b.num_cpus());
        if (best.empty() || better) best = id;
      }
      if (best.empty()) {
        return describe_resources(need.num_cpus(), need.num_gpus(), need.memory_bytes()) +
               " for an instance of '" + (chain.operators().empty() ? "?" : chain.operators(0)) +
               "'";
      }
      Hold hold{best, reserve ? need.num_cpus() : 0, reserve ? need.memory_bytes() : 0, {}};
      if (reserve) {
        auto& f = room.at(best).free;
        f.set_num_cpus(f.num_cpus() - need.num_cpus());
        f.set_num_gpus(f.num_gpus() - need.num_gpus());
        f.set_memory_bytes(f.memory_bytes() - need.memory_bytes());
        auto& used = room.at(best).gpu_used;
        for (int g = 0; g < static_cast<int>(used.size()) &&
                        static_cast<int>(hold.gpus.size()) < need.num_gpus();
             ++g) {
          if (!used[g]) {
            used[g] = true;
            hold.gpus.push_back(g);
          }
        }
      }
      ++placed_here[best];
      (*holds)[instance.task] = std::move(hold);
    }
    return std::nullopt;
  }

  // Places every instance of `job`, or says why it cannot run yet.
  std::optional<std::string> place(Job& job) {
    if (std::none_of(nodes_.begin(), nodes_.end(), [](const auto& n) { return n.second.alive; })) {
      return "no worker node has joined the cluster";
    }
    std::map<std::string, Room> room;
    for (const auto& [id, node] : nodes_) {
      if (!node.alive || node.total.num_cpus() <= 0) continue;
      rpc::Resources f;
      f.set_num_cpus(node.total.num_cpus() - node.used.num_cpus());
      f.set_num_gpus(node.total.num_gpus() - node.used.num_gpus());
      f.set_memory_bytes(node.total.memory_bytes() - node.used.memory_bytes());
      room[id] = Room{f, node.gpu_used};
    }
    std::vector<Hold> holds;
    if (auto stuck = assign(job.request, room, &holds)) return "waiting for " + *stuck;
    // One task process per node used, in the order nodes were first used.
    std::map<std::string, int> process_of_node;
    for (std::size_t t = 0; t < holds.size(); ++t) {
      const std::string& node_id = holds[t].node_id;
      auto [it, added] =
          process_of_node.try_emplace(node_id, static_cast<int>(job.processes.size()));
      if (added) job.processes.push_back(Process{.node_id = node_id});
      Process& p = job.processes[it->second];
      // The process sees its GPUs in this order (CUDA_VISIBLE_DEVICES), so
      // the task's are the next ones CUDA numbers.
      std::vector<int>& ordinals = job.gpus_of_task.emplace_back();
      for (std::size_t g = 0; g < holds[t].gpus.size(); ++g) {
        ordinals.push_back(static_cast<int>(p.gpus.size() + g));
      }
      p.gpus.insert(p.gpus.end(), holds[t].gpus.begin(), holds[t].gpus.end());
      p.memory += holds[t].memory;
      job.process_of_task.push_back(it->second);
    }
    for (const Hold& hold : holds) {
      Node& node = nodes_.at(hold.node_id);
      node.used.set_num_cpus(node.used.num_cpus() + hold.cpus);
      node.used.set_memory_bytes(node.used.memory_bytes() + hold.memory);
      node.used.set_num_gpus(node.used.num_gpus() + static_cast<int>(hold.gpus.size()));
      for (int g : hold.gpus) node.gpu_used[g] = true;
    }
    job.holds = std::move(holds);
    return std::nullopt;
  }

  void schedule_pending() {
    std::vector<Job*> pending;
    for (auto& [id, job] : jobs_) {
      if (job->info.state() == rpc::JobInfo::PENDING) pending.push_back(job.get());
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
      job->info.clear_nodes();
      for (std::size_t p = 0; p < job->processes.size(); ++p) {
        job->info.add_nodes(job->processes[p].node_id);
        rpc::WorkerCommand command;
        command.mutable_prepare()->set_job_id(job->info.job_id());
        command.mutable_prepare()->set_process_index(static_cast<int>(p));
        nodes_.at(job->processes[p].node_id).commands.push_back(std::move(command));
      }
      save(*job);
      spdlog::info("job {} placed on {} task processes", job->info.job_id(), job->processes.size());
    }
    changed_.notify_all();
  }

  void start_processes(Job& job) {
    TaskAssignment assignment;
    assignment.job_id = job.info.job_id();
    assignment.token = options_.token;
    assignment.fingerprint = job.request.fingerprint();
    assignment.process_of_task = job.process_of_task;
    assignment.gpus_of_task = job.gpus_of_task;
    for (const auto& p : job.processes) assignment.data_addresses.push_back(p.data_address);
    for (std::size_t p = 0; p < job.processes.size(); ++p) {
      assignment.process_index = static_cast<int>(p);
      assignment.node_id = job.processes[p].node_id;
      rpc::WorkerCommand command;
      auto* start = command.mutable_start();
      start->set_job_id(job.info.job_id());
      start->set_process_index(static_cast<int>(p));
      start->set_program_sha256(job.request.program_sha256());
      *start->mutable_args() = job.request.args();
      start->set_working_directory(job.request.working_directory());
      start->set_assignment(assignment.encode());
      for (int g : job.processes[p].gpus) start->add_gpu_indices(g);
      start->set_memory_limit_bytes(job.processes[p].memory);
      nodes_.at(job.processes[p].node_id).commands.push_back(std::move(command));
      job.processes[p].started = true;
    }
    changed_.notify_all();
  }

  // Tells every node still running the job's processes to end them: drained
  // for a stop the user asked for, killed at once when the job failed.
  void send_stop(const Job& job) {
    std::set<std::string> sent;
    for (const auto& p : job.processes) {
      if (p.exited || !sent.insert(p.node_id).second) continue;
      auto it = nodes_.find(p.node_id);
      if (it == nodes_.end() || !it->second.alive) continue;
      rpc::WorkerCommand command;
      command.mutable_stop()->set_job_id(job.info.job_id());
      command.mutable_stop()->set_drain(job.stop_requested &&
                                        job.info.state() != rpc::JobInfo::FAILED);
      it->second.commands.push_back(std::move(command));
    }
    changed_.notify_all();
  }

  void fail(Job& job, std::string error) {  // by value: it may be job.held_error
    job.held_error.clear();
    if (is_final(job.info.state())) return;
    spdlog::warn("job {} failed: {}", job.info.job_id(), error);
    finish(job, rpc::JobInfo::FAILED, error);
    send_stop(job);
    end_unstarted_processes(job);
  }

  // Processes not yet started (their job failed or was stopped while it was
  // being prepared) will never report an exit: they end here.
  static void end_unstarted_processes(Job& job) {
    for (Process& p : job.processes) {
      if (!p.started) p.exited = true;
    }
  }

  // Once every process of the job has ended: its final state, and its
  // resources back to the nodes for the jobs that wait.
  void settle_if_ended(Job& job) {
    if (!std::all_of(job.processes.begin(), job.processes.end(),
                     [](const Process& p) { return p.exited; })) {
      return;
    }
    if (!job.held_error.empty()) fail(job, job.held_error);
    if (!is_final(job.info.state()))
      finish(job, job.stop_requested ? rpc::JobInfo::STOPPED : rpc::JobInfo::FINISHED, "");
    release(job);
    schedule_pending();
  }

  void finish(Job& job, rpc::JobInfo::State state, const std::string& error) {
    job.info.set_state(state);
    job.info.set_error(error);
    job.info.set_finished_at_ms(now_ms());
    save(job);
    changed_.notify_all();
  }

  // A failed task process's error in the job's output (`sage job logs`, the
  // submitting program's output) and in the head's log.
  void record_process_failure(const Job& job, int process_index, const std::string& error) {
    const std::string what = fmt::format("task process {} on node '{}' failed: {}", process_index,
                                         job.processes[process_index].node_id, error);
    spdlog::warn("job {}: {}", job.info.job_id(), what);
    try {
      store_.append_logs(job.info.job_id(), {"[sage] " + what});
    } catch (const Error& e) {
      spdlog::error("job {}: cannot add to its output: {}", job.info.job_id(), e.what());
    }
  }

  void release(Job& job) {
    for (const Hold& hold : job.holds) {
      auto it = nodes_.find(hold.node_id);
      if (it == nodes_.end()) continue;
      Node& node = it->second;
      node.used.set_num_cpus(std::max(0.0, node.used.num_cpus() - hold.cpus));
      node.used.set_memory_bytes(node.used.memory_bytes() -
                                 std::min(node.used.memory_bytes(), hold.memory));
      node.used.set_num_gpus(
          std::max(0, node.used.num_gpus() - static_cast<int>(hold.gpus.size())));
      for (int g : hold.gpus) {
        if (g < static_cast<int>(node.gpu_used.size())) node.gpu_used[g] = false;
      }
    }
    job.holds.clear();
    // The programs of jobs that are over may go, beyond the most recent few.
    std::set<std::string> in_use;
    for (const auto& [id, other] : jobs_) {
      if (!is_final(other->info.state())) in_use.insert(other->request.program_sha256());
    }
    if (const auto removed = programs_.prune(kKeptPrograms, in_use); removed > 0) {
      spdlog::info("removed {} stored programs no job needs", removed);
    }
  }

  void node_died(const std::string& node_id, const std::string& why) {
    Node& node = nodes_.at(node_id);
    node.alive = false;
    node.commands.clear();
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
    node.used.Clear();
    changed_.notify_all();
  }

  // Marks silent nodes dead, and fails jobs whose held error outlived the grace.
  void monitor_nodes() {
    std::unique_lock lock(mutex_);
    while (!shutting_down_) {
      changed_.wait_for(lock, kMonitorInterval);
      const auto now = now_ms();
      for (auto& [id, job] : jobs_) {
        if (!job->held_error.empty() && now - job->held_since_ms >= kRootCauseGrace.count()) {
          fail(*job, job->held_error);
          settle_if_ended(*job);
        }
      }
      for (auto& [id, node] : nodes_) {
        if (node.alive && now - node.last_heartbeat_ms > kNodeTimeout.count()) {
          node_died(id, "node '" + id + "' stopped answering (no heartbeat for " +
                            std::to_string(kNodeTimeout.count() / 1000) + " s)");
        }
      }
      if (const auto forgotten = take_forgotten_jobs(); !forgotten.empty()) {
        lock.unlock();
        remove_from_store(forgotten);
        lock.lock();
      }
    }
  }

  // Takes the jobs beyond the history limit out of jobs_, those that ended
  // first; a job some process of which has not yet reported its exit stays.
  // Returns their ids, for remove_from_store() once mutex_ is released.
  std::vector<std::string> take_forgotten_jobs() {
    std::vector<const Job*> ended;
    for (const auto& [id, job] : jobs_) {
      if (is_final(job->info.state()) && std::all_of(job->processes.begin(), job->processes.end(),
                                                     [](const Process& p) { return p.exited; })) {
        ended.push_back(job.get());
      }
    }
    const auto keep = static_cast<std::size_t>(options_.job_history);
    if (ended.size() <= keep) return {};
    std::sort(ended.begin(), ended.end(), [](const Job* a, const Job* b) {
      return std::pair(a->info.finished_at_ms(), a->info.job_id()) <
             std::pair(b->info.finished_at_ms(), b->info.job_id());
    });
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < ended.size() - keep; ++i) ids.push_back(ended[i]->info.job_id());
    for (const auto& id : ids) jobs_.erase(id);
    return ids;
  }

  void remove_from_store(const std::vector<std::string>& ids) {
    if (ids.empty()) return;
    try {
      for (const auto& id : ids) store_.remove(id);
    } catch (const Error& e) {
      // They are forgotten again after a restart, when they load from the store.
      spdlog::error("cannot remove forgotten jobs from the job database: {}", e.what());
      return;
    }
    spdlog::info("forgot {} ended jobs and their output (beyond the history of {}, from {} to {})",
                 ids.size(), options_.job_history, ids.front(), ids.back());
  }

  // The job as clients see it: while it runs, the final statistics of its
  // processes that ended and the latest of those still running.
  static rpc::JobInfo with_live_statistics(const Job& job) {
    rpc::JobInfo info = job.info;
    for (const Process& process : job.processes) {
      if (!process.exited) info.mutable_instances()->MergeFrom(process.live);
    }
    sort_instances(info.mutable_instances());
    return info;
  }

  Process* find_process(const std::string& job_id, int index) {
    auto it = jobs_.find(job_id);
    if (it == jobs_.end() || index < 0 || index >= static_cast<int>(it->second->processes.size())) {
      return nullptr;
    }
    return &it->second->processes[index];
  }

  // Throws sage::Error when the job database refuses the record.
  void persist(const Job& job) {
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
    record.statistics = job.info.SerializeAsString();
    store_.put(record);
  }

  // A change of a known job: kept in memory, and logged, when the database
  // refuses it (the job goes on; its record is stale until the next change).
  void save(const Job& job) {
    try {
      persist(job);
    } catch (const Error& e) {
      spdlog::error("job {}: cannot record its state {}: {}", job.info.job_id(),
                    rpc::JobInfo::State_Name(job.info.state()), e.what());
    }
  }

  // Jobs from before a restart: listed as they ended; a job that was running
  // when the head went down cannot be resumed.
  void load_jobs() {
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
      if (!is_final(job->info.state())) {
        job->info.set_state(rpc::JobInfo::FAILED);
        job->info.set_error("the head restarted while the job ran");
        job->info.set_finished_at_ms(now_ms());
        persist(*job);
      }
      jobs_[record.id] = std::move(job);
    }
  }

  HeadOptions options_;
  ProgramStore programs_;
  JobStore store_;
  int jobmanager_port_ = 0, cluster_port_ = 0;
  std::unique_ptr<grpc::Server> jobs_server_, cluster_server_;
  std::thread monitor_;

  std::mutex mutex_;
  std::condition_variable changed_;  // any state change: commands, jobs, shutdown
  bool shutting_down_ = false;
  std::map<std::string, Node> nodes_;
  std::map<std::string, std::unique_ptr<Job>> jobs_;
  std::uint64_t sessions_ = 0;
};

Head::Head(HeadOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Head::~Head() = default;
int Head::cluster_port() const { return impl_->cluster_port(); }
int Head::jobmanager_port() const { return impl_->jobmanager_port(); }
void Head::wait() { impl_->wait(); }
void Head::shutdown() { impl_->shutdown(); }

}  // namespace sage::cluster
