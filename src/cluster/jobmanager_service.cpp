#include "cluster/jobmanager_service.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <memory>

#include "cluster/job_info.hpp"
#include "cluster/request_validation.hpp"
#include "cluster/rpc_call.hpp"
#include "cluster/scheduler.hpp"
#include "sage/error.hpp"

namespace sage::cluster {
namespace {

using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;

// Output lines read from the job database at a time for a watcher.
constexpr std::int64_t kWatchPageLines = 10'000;

}  // namespace

Status JobManagerService::HasProgram(ServerContext* context, const rpc::ProgramRef* request,
                                     rpc::HasProgramReply* reply) {
  return serve("HasProgram", context, options_.token, *request, [&]() -> Status {
    reply->set_present(programs_.contains(request->sha256()));
    programs_.touch(request->sha256());  // kept until the submit that follows
    return Status::OK;
  });
}

Status JobManagerService::UploadProgram(ServerContext* context,
                                        grpc::ServerReader<rpc::ProgramChunk>* reader,
                                        rpc::ProgramRef* reply) {
  return serve("UploadProgram", context, options_.token, [&]() -> Status {
    rpc::ProgramChunk chunk;
    std::unique_ptr<ProgramStore::Upload> upload;  // abandoned: its file goes
    std::uint64_t received = 0;
    try {
      while (reader->Read(&chunk)) {
        received += chunk.data().size();
        if (received > options_.max_program_bytes) {
          return {StatusCode::RESOURCE_EXHAUSTED,
                  fmt::format(
                      "the upload (a program or a script's bundle) is larger than this head takes "
                      "({:.1f} MiB); start "
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

Status JobManagerService::SubmitJob(ServerContext* context, const rpc::SubmitRequest* request,
                                    rpc::SubmitReply* reply) {
  return serve("SubmitJob", context, options_.token, [&]() -> Status {
    if (auto problem = problem_in(*request, options_.max_instances_per_job)) {
      return invalid(*problem);
    }
    if (!programs_.contains(request->program_sha256())) {
      return {StatusCode::FAILED_PRECONDITION,
              "program " + request->program_sha256() + " was not uploaded"};
    }
    if (!request->bundle_sha256().empty() && !programs_.contains(request->bundle_sha256())) {
      return {StatusCode::FAILED_PRECONDITION,
              "bundle " + request->bundle_sha256() + " was not uploaded"};
    }
    MutexLock lock(state_.mutex);
    if (auto never = never_fits(*request, state_.nodes.idle_rooms())) {
      return {StatusCode::RESOURCE_EXHAUSTED, *never};
    }
    reply->set_job_id(state_.jobs.submit(*request));
    state_.changed.notify_all();
    return Status::OK;
  });
}

Status JobManagerService::WatchJob(ServerContext* context, const rpc::WatchRequest* request,
                                   grpc::ServerWriter<rpc::JobEvent>* writer) {
  return serve("WatchJob", context, options_.token, *request, [&]() -> Status {
    const std::string& id = request->job_id();
    std::int64_t next_line = request->from_line();
    MutexLock lock(state_.mutex);
    if (!state_.jobs.contains(id)) return unknown_job(id);
    while (true) {
      const std::optional<rpc::JobInfo> info = state_.jobs.info(id);
      if (!info) return forgotten_job(id);
      lock.unlock();
      LogPage page = store_.logs(id, next_line, kWatchPageLines);
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
      const bool caught_up = next_line >= store_.log_line_count(id);
      if (caught_up && (is_final(info->state()) || !request->follow())) {
        // The lines read may have been cut short by the job being forgotten.
        lock.lock();
        if (!state_.jobs.contains(id)) return forgotten_job(id);
        lock.unlock();
        rpc::JobEvent event;
        *event.mutable_state() = *info;
        writer->Write(event);
        return Status::OK;
      }
      lock.lock();
      if (caught_up) {
        state_.changed.wait_for(state_.mutex, kStreamPoll);
        if (context->IsCancelled()) return Status::OK;
        if (state_.shutting_down) {
          return {StatusCode::ABORTED,
                  "the head shut down while the job was followed; a job running then is "
                  "FAILED when the head restarts"};
        }
      }
    }
  });
}

Status JobManagerService::ListJobs(ServerContext* context, const rpc::Empty*, rpc::JobList* reply) {
  return serve("ListJobs", context, options_.token, [&]() -> Status {
    MutexLock lock(state_.mutex);
    for (auto& info : state_.jobs.list()) *reply->add_jobs() = std::move(info);
    return Status::OK;
  });
}

Status JobManagerService::GetJob(ServerContext* context, const rpc::JobRef* request,
                                 rpc::JobInfo* reply) {
  return serve("GetJob", context, options_.token, *request, [&]() -> Status {
    MutexLock lock(state_.mutex);
    auto info = state_.jobs.info(request->job_id());
    if (!info) return unknown_job(request->job_id());
    *reply = std::move(*info);
    return Status::OK;
  });
}

Status JobManagerService::StopJob(ServerContext* context, const rpc::JobRef* request,
                                  rpc::JobInfo* reply) {
  return serve("StopJob", context, options_.token, *request, [&]() -> Status {
    MutexLock lock(state_.mutex);
    auto info = state_.jobs.stop(request->job_id());
    if (!info) return unknown_job(request->job_id());
    state_.changed.notify_all();
    *reply = std::move(*info);
    return Status::OK;
  });
}

Status JobManagerService::ClusterStatus(ServerContext* context, const rpc::Empty*,
                                        rpc::ClusterInfo* reply) {
  return serve("ClusterStatus", context, options_.token, [&]() -> Status {
    MutexLock lock(state_.mutex);
    state_.nodes.list(reply);
    for (auto& info : state_.jobs.unfinished()) *reply->add_running_jobs() = std::move(info);
    return Status::OK;
  });
}

Status JobManagerService::forgotten_job(const std::string& id) const {
  return {StatusCode::NOT_FOUND,
          "job '" + id + "' was forgotten while being read: the head keeps the " +
              std::to_string(options_.job_history) +
              " jobs that ended last (sage cluster start --head --job-history)"};
}

std::string JobManagerService::discarded_lines_notice(std::int64_t count) const {
  return "[sage] " + std::to_string(count) +
         fmt::format(
             " earlier output lines of this job were discarded: the head keeps the "
             "last {:.1f} MiB of each job's output (sage cluster start --head "
             "--max-job-output)",
             static_cast<double>(options_.max_job_output_bytes) / (1 << 20));
}

}  // namespace sage::cluster
