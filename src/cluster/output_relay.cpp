#include "cluster/output_relay.hpp"

#include <poll.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <array>
#include <optional>

#include "cluster/task_process.hpp"
#include "sage/error.hpp"

namespace sage::cluster {

OutputRelay::OutputRelay(std::string job_id, int process_index, std::string node_id, RelaySink sink)
    : node_id_(std::move(node_id)), sink_(std::move(sink)) {
  batch_.set_job_id(std::move(job_id));
  batch_.set_process_index(process_index);
}

std::string OutputRelay::relay(LaunchedProcess& process) {
  pid_ = process.pid();
  OutputLines output(node_id_, pid_);
  last_flush_ = std::chrono::steady_clock::now();
  std::array<UniqueFd*, 2> pipes = {&process.output(), &process.results()};
  std::array<pollfd, 2> fds = {{{pipes[0]->get(), POLLIN, 0}, {pipes[1]->get(), POLLIN, 0}}};
  std::array<char, 65536> buffer;
  // When the process has ended, processes it started may still hold its
  // pipes: those in its group are killed, others are waited for briefly.
  std::optional<std::chrono::steady_clock::time_point> ended_at;
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    if (!ended_at && process.has_ended()) {
      process.kill_group();
      ended_at = std::chrono::steady_clock::now();
    } else if (ended_at && std::chrono::steady_clock::now() - *ended_at > kLeftoverOutputGrace) {
      spdlog::warn(
          "job {}: a process started by its task process {} outside its process group "
          "still holds its output; no longer reading it",
          batch_.job_id(), pid_);
      break;
    }
    if (poll(fds.data(), fds.size(), static_cast<int>(kOutputFlushInterval.count())) > 0) {
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        const ssize_t n = read(fds[i].fd, buffer.data(), buffer.size());
        if (n <= 0) {
          pipes[i]->reset();
          fds[i].fd = -1;  // poll() skips it
          continue;
        }
        const std::string_view bytes(buffer.data(), static_cast<std::size_t>(n));
        if (i == 0) {
          output.add(bytes, &lines_);
          add_lines();
        } else {
          results_.append(bytes);
        }
      }
      try {
        take_results();
      } catch (const Error& e) {
        spdlog::warn("job {}: {}", batch_.job_id(), e.what());
        results_.clear();
      }
    }
    if (std::chrono::steady_clock::now() - last_flush_ >= kOutputFlushInterval) flush();
  }
  for (UniqueFd* pipe : pipes) pipe->reset();
  output.finish(&lines_);
  add_lines();
  flush();
  return std::move(exit_report_);
}

void OutputRelay::add_lines() {
  for (auto& line : lines_) {
    batch_bytes_ += line.size();
    batch_.add_lines(std::move(line));
    if (static_cast<std::size_t>(batch_.lines_size()) >= kOutputBatchLines ||
        batch_bytes_ >= kOutputBatchBytes) {
      flush();
    }
  }
  lines_.clear();
}

void OutputRelay::flush() {
  last_flush_ = std::chrono::steady_clock::now();
  if (batch_.lines_size() == 0) return;
  sink_.output(batch_);
  batch_.clear_lines();
  batch_bytes_ = 0;
}

void OutputRelay::take_results() {
  ResultFrameKind kind;
  std::string payload;
  while (take_result_frame(results_, &kind, &payload)) {
    if (kind == ResultFrameKind::kExit) {
      exit_report_ = std::move(payload);
      continue;
    }
    if (kind == ResultFrameKind::kWarning) {
      spdlog::warn("task process {} (pid {}): {}", batch_.process_index(), pid_, payload);
      continue;
    }
    rpc::ProgressReport progress;
    if (!progress.ParseFromString(payload)) continue;
    progress.set_job_id(batch_.job_id());
    progress.set_process_index(batch_.process_index());
    sink_.progress(progress);
  }
}

}  // namespace sage::cluster
