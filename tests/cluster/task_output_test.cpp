// Output of task processes: lines written by a task's thread are marked with
// the task, and the worker turns marks into "(task pid=N, node=X)" prefixes.
#include "cluster/task_output.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

#include "runtime/current_task.hpp"

namespace sage::cluster {
namespace {

TEST(TaskOutputTest, PrefixesNameTheTaskWhenThereIsOne) {
  EXPECT_EQ(prefix_output_line("\x1emap[1/4]\x1ehello", "w1", 42),
            "(map[1/4] pid=42, node=w1) hello");
  EXPECT_EQ(prefix_output_line("hello", "w1", 42), "(pid=42, node=w1) hello");
  EXPECT_EQ(prefix_output_line("", "w1", 42), "(pid=42, node=w1) ");
  // A stray mark is text.
  EXPECT_EQ(prefix_output_line("\x1eno end", "w1", 42), "(pid=42, node=w1) \x1eno end");
}

// Runs `write` with standard output going to a pipe; returns what came out,
// each line prefixed as the worker does.
template <class F>
std::vector<std::string> captured_lines(F write) {
  std::fflush(stdout);
  std::cout.flush();
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
  const int saved = dup(STDOUT_FILENO);
  dup2(pipe_fds[1], STDOUT_FILENO);
  close(pipe_fds[1]);
  std::string text;
  std::thread reader([&text, in = pipe_fds[0]] {  // so a full pipe never blocks the writers
    char buffer[4096];
    for (ssize_t n; (n = read(in, buffer, sizeof buffer)) > 0;) text.append(buffer, n);
  });
  {
    const TaskOutput output;
    write();
  }
  std::fflush(stdout);
  dup2(saved, STDOUT_FILENO);  // closes the pipe's last write end: the reader ends
  close(saved);
  reader.join();
  close(pipe_fds[0]);
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) {
    lines.push_back(prefix_output_line(line, "w1", 7));
  }
  return lines;
}

TEST(TaskOutputTest, LinesOfATasksThreadSayWhichTaskWroteThem) {
  const auto lines = captured_lines([] {
    std::thread task([] {
      const std::string name = "map[1/4]";
      const runtime::CurrentTaskScope current(name);
      std::cout << "hello\n";
      std::cout << "in " << 2 << " parts" << std::endl;
      std::cout << "flushed without a newline" << std::flush;
      std::cout << "unfinished when the thread ends";
    });
    task.join();
    std::cout << "not a task" << std::endl;
    std::printf("from printf\n");
  });
  EXPECT_EQ(lines, (std::vector<std::string>{
                       "(map[1/4] pid=7, node=w1) hello",
                       "(map[1/4] pid=7, node=w1) in 2 parts",
                       "(map[1/4] pid=7, node=w1) flushed without a newline",
                       "(pid=7, node=w1) unfinished when the thread ends",
                       "(pid=7, node=w1) not a task",
                       "(pid=7, node=w1) from printf",
                   }));
}

TEST(TaskOutputTest, ConcurrentTasksNeverShareALine) {
  constexpr int kTasks = 4, kLines = 5000;
  const auto lines = captured_lines([] {
    std::vector<std::thread> tasks;
    for (int t = 0; t < kTasks; ++t) {
      tasks.emplace_back([t] {
        const std::string name = "t[" + std::to_string(t) + "/4]";
        const runtime::CurrentTaskScope current(name);
        for (int i = 0; i < kLines; ++i) std::cout << "task " << t << " line " << i << '\n';
      });
    }
    for (auto& task : tasks) task.join();
  });
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(kTasks * kLines));
  std::vector<int> next(kTasks, 0);
  for (const auto& line : lines) {
    int t = -1, t2 = -1, i = -1;
    ASSERT_EQ(std::sscanf(line.c_str(), "(t[%d/4] pid=7, node=w1) task %d line %d", &t, &t2, &i), 3)
        << line;
    ASSERT_EQ(t, t2) << line;
    EXPECT_EQ(i, next[t]++) << "lines of one task out of order: " << line;
  }
}

}  // namespace
}  // namespace sage::cluster
