// The relay between a task process's pipes and the head, with a recording
// sink in place of the head and forked children in place of task processes.
#include "cluster/output_relay.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "cluster/task_process.hpp"

namespace sage::cluster {
namespace {

// Forks a child that leads its own process group, as a task process does, and
// runs `body` with its output and result pipes; it ends when `body` returns.
// Only async-signal-safe work in `body`: prepare bytes before.
LaunchedProcess fork_task_process(const std::function<void(int output, int results)>& body) {
  int output[2], results[2];
  EXPECT_EQ(pipe2(output, O_CLOEXEC), 0);
  EXPECT_EQ(pipe2(results, O_CLOEXEC), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    close(output[0]);
    close(results[0]);
    body(output[1], results[1]);
    _exit(0);
  }
  setpgid(pid, pid);
  close(output[1]);
  close(results[1]);
  return LaunchedProcess(pid, UniqueFd(output[0]), UniqueFd(results[0]));
}

void write_text(int fd, const std::string& text) {
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

// What reached the sink.
struct Recorded {
  std::vector<rpc::OutputReport> batches;
  std::vector<rpc::ProgressReport> progress;

  RelaySink sink() {
    return {.output = [this](const rpc::OutputReport& r) { batches.push_back(r); },
            .progress = [this](const rpc::ProgressReport& p) { progress.push_back(p); }};
  }
  std::vector<std::string> lines() const {
    std::vector<std::string> all;
    for (const auto& batch : batches)
      all.insert(all.end(), batch.lines().begin(), batch.lines().end());
    return all;
  }
};

TEST(OutputRelayTest, LinesArePrefixedAndNameTheirJobAndProcess) {
  Recorded recorded;
  LaunchedProcess process =
      fork_task_process([](int output, int) { write_text(output, "one\ntwo\nunfinished"); });
  const std::string prefix = "(pid=" + std::to_string(process.pid()) + ", node=n1) ";
  const std::string exit_report = OutputRelay("job-1", 2, "n1", recorded.sink()).relay(process);
  EXPECT_EQ(exit_report, "");
  EXPECT_EQ(recorded.lines(),
            (std::vector<std::string>{prefix + "one", prefix + "two", prefix + "unfinished"}));
  for (const auto& batch : recorded.batches) {
    EXPECT_EQ(batch.job_id(), "job-1");
    EXPECT_EQ(batch.process_index(), 2);
    EXPECT_GT(batch.lines_size(), 0);
  }
  EXPECT_FALSE(process.output().valid());
  EXPECT_FALSE(process.results().valid());
  process.reap();
}

TEST(OutputRelayTest, BatchesHoldAtMostTheirShareOfLines) {
  std::string text;
  constexpr int kLines = 3 * static_cast<int>(kOutputBatchLines) + 10;
  for (int i = 0; i < kLines; ++i) text += std::to_string(i) + "\n";
  Recorded recorded;
  LaunchedProcess process = fork_task_process([&](int output, int) { write_text(output, text); });
  OutputRelay("job-1", 0, "n1", recorded.sink()).relay(process);
  const auto lines = recorded.lines();
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(kLines));
  for (int i = 0; i < kLines; ++i) {
    EXPECT_TRUE(lines[i].ends_with(") " + std::to_string(i))) << lines[i];
  }
  EXPECT_GE(recorded.batches.size(), 4u);
  for (const auto& batch : recorded.batches) {
    EXPECT_LE(static_cast<std::size_t>(batch.lines_size()), kOutputBatchLines);
  }
  process.reap();
}

TEST(OutputRelayTest, ProgressGoesToTheSinkWarningsToTheLogAndTheExitReportIsReturned) {
  rpc::ProgressReport progress;
  progress.add_instances()->set_records_in(7);
  const std::string progress_bytes = progress.SerializeAsString();
  rpc::ExitReport exit;
  exit.set_error("it broke");
  const std::string exit_bytes = exit.SerializeAsString();
  Recorded recorded;
  LaunchedProcess process = fork_task_process([&](int, int results) {
    write_result_frame(results, ResultFrameKind::kProgress, progress_bytes);
    write_result_frame(results, ResultFrameKind::kWarning, "a stranger knocked");
    write_result_frame(results, ResultFrameKind::kExit, exit_bytes);
  });
  const std::string exit_report = OutputRelay("job-1", 3, "n1", recorded.sink()).relay(process);
  EXPECT_EQ(exit_report, exit_bytes);
  ASSERT_EQ(recorded.progress.size(), 1u);
  EXPECT_EQ(recorded.progress[0].job_id(), "job-1");
  EXPECT_EQ(recorded.progress[0].process_index(), 3);
  EXPECT_EQ(recorded.progress[0].instances(0).records_in(), 7u);
  EXPECT_TRUE(recorded.batches.empty());
  process.reap();
}

TEST(OutputRelayTest, BytesThatAreNoFrameAreDroppedAndTheRelayGoesOn) {
  Recorded recorded;
  LaunchedProcess process = fork_task_process([](int output, int results) {
    write_text(results, "not a frame");
    write_text(output, "still here\n");
  });
  EXPECT_EQ(OutputRelay("job-1", 0, "n1", recorded.sink()).relay(process), "");
  ASSERT_EQ(recorded.lines().size(), 1u);
  EXPECT_TRUE(recorded.lines()[0].ends_with("still here"));
  process.reap();
}

// What the process started in its group and left behind is killed once it
// ends: the relay does not wait for it.
TEST(OutputRelayTest, WhatTheProcessLeftInItsGroupIsKilled) {
  Recorded recorded;
  LaunchedProcess process = fork_task_process([](int, int) {
    if (fork() == 0) {
      for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) close(fd);  // not the test's
      for (;;) pause();  // holds both pipes, in the group
    }
  });
  const auto started = std::chrono::steady_clock::now();
  OutputRelay("job-1", 0, "n1", recorded.sink()).relay(process);
  EXPECT_LT(std::chrono::steady_clock::now() - started, kLeftoverOutputGrace);
  process.reap();
}

// One that left its group is given kLeftoverOutputGrace, then no longer read.
TEST(OutputRelayTest, OutputHeldOutsideTheGroupIsReadForAGraceThenLeft) {
  Recorded recorded;
  LaunchedProcess process = fork_task_process([](int output, int) {
    // The task process ends only once the escaped one has left its group:
    // else the relay's kill of the group could still reach it.
    int left_group[2];
    if (pipe(left_group) != 0) _exit(3);
    const pid_t escaped = fork();
    if (escaped == 0) {
      setpgid(0, 0);
      if (write(left_group[1], "x", 1) != 1) _exit(3);
      for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, left_group[0], left_group[1]}) {
        close(fd);  // not the test's
      }
      for (;;) pause();  // holds both pipes, outside the group
    }
    close(left_group[1]);
    char left = 0;
    if (read(left_group[0], &left, 1) != 1) _exit(3);
    char line[32];
    const int length = std::snprintf(line, sizeof line, "escaped %d\n", static_cast<int>(escaped));
    write_text(output, std::string(line, static_cast<std::size_t>(length)));
  });
  const auto started = std::chrono::steady_clock::now();
  OutputRelay("job-1", 0, "n1", recorded.sink()).relay(process);
  EXPECT_GE(std::chrono::steady_clock::now() - started, kLeftoverOutputGrace);
  ASSERT_EQ(recorded.lines().size(), 1u);
  const std::string line = recorded.lines()[0];
  const pid_t escaped = std::stoi(line.substr(line.find("escaped ") + 8));
  EXPECT_EQ(kill(escaped, SIGKILL), 0);
  process.reap();
}

}  // namespace
}  // namespace sage::cluster
