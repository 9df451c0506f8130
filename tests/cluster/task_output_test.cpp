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

#include "net/rpc.hpp"
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

// Runs `write` with standard output and error going to one pipe, as in a
// task process; returns what came out, lines prefixed as the worker does.
template <class F>
std::vector<std::string> captured_lines(F write) {
  std::fflush(stdout);
  std::cout.flush();
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
  const int saved = dup(STDOUT_FILENO), saved_error = dup(STDERR_FILENO);
  dup2(pipe_fds[1], STDOUT_FILENO);
  dup2(pipe_fds[1], STDERR_FILENO);
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
  dup2(saved, STDOUT_FILENO);
  dup2(saved_error, STDERR_FILENO);  // closes the pipe's last write end: the reader ends
  close(saved);
  close(saved_error);
  reader.join();
  close(pipe_fds[0]);
  std::vector<std::string> lines;
  OutputLines splitter("w1", 7);
  splitter.add(text, &lines);
  splitter.finish(&lines);
  return lines;
}

TEST(TaskOutputTest, LinesOfATasksThreadSayWhichTaskWroteThem) {
  const auto lines = captured_lines([] {
    std::thread task([] {
      const std::string name = "map[1/4]";
      const runtime::CurrentTaskScope current(name);
      std::cout << "hello\n";
      std::cout << "in " << 2 << " parts" << std::endl;
      std::cerr << "to std::cerr, which flushes " << 3 << " times\n";
      std::cout << "a flush does not end a line, " << std::flush;
      std::cout << "the end of the thread does";
    });
    task.join();
    std::cout << "not a task" << std::endl;
    std::printf("from printf\n");
  });
  EXPECT_EQ(lines, (std::vector<std::string>{
                       "(map[1/4] pid=7, node=w1) hello",
                       "(map[1/4] pid=7, node=w1) in 2 parts",
                       "(map[1/4] pid=7, node=w1) to std::cerr, which flushes 3 times",
                       "(pid=7, node=w1) a flush does not end a line, the end of the thread does",
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

TEST(TaskOutputTest, ALineLongerThanTheLimitComesInPieces) {
  const std::string long_line(kMaxOutputLineBytes + 10, 'x');
  const auto lines = captured_lines([&] {
    std::thread task([&] {
      const std::string name = "map[0/1]";
      const runtime::CurrentTaskScope current(name);
      std::cout << long_line << '\n';
    });
    task.join();
  });
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "(map[0/1] pid=7, node=w1) " + std::string(kMaxOutputLineBytes, 'x'));
  EXPECT_EQ(lines[1], "(map[0/1] pid=7, node=w1) xxxxxxxxxx");
}

TEST(TaskOutputTest, ALineOfExactlyTheLimitIsOneLineAndCutsFallBetweenCharacters) {
  const std::string euro = "\xe2\x82\xac";
  const auto lines = captured_lines([&] {
    std::thread task([&] {
      const std::string name = "map[0/1]";
      const runtime::CurrentTaskScope current(name);
      std::cout << std::string(kMaxOutputLineBytes, 'x') << std::endl;
      std::cout << std::string(kMaxOutputLineBytes - 1, 'a') << euro << "b\n";
    });
    task.join();
  });
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "(map[0/1] pid=7, node=w1) " + std::string(kMaxOutputLineBytes, 'x'));
  EXPECT_EQ(lines[1], "(map[0/1] pid=7, node=w1) " + std::string(kMaxOutputLineBytes - 1, 'a'));
  EXPECT_EQ(lines[2], "(map[0/1] pid=7, node=w1) " + euro + "b");
}

TEST(OutputLinesTest, LinesAreSplitAtNewlinesAndLongOnesBetweenCharacters) {
  OutputLines splitter("w1", 7);
  std::vector<std::string> lines;
  splitter.add("one\ntw", &lines);
  splitter.add("o\n", &lines);
  EXPECT_EQ(lines, (std::vector<std::string>{"(pid=7, node=w1) one", "(pid=7, node=w1) two"}));
  lines.clear();
  // A line of 'a's with a 3-byte character across the cut: the cut moves before it.
  const std::size_t longest = kMaxOutputLineBytes + kMaxMarkBytes;
  const std::string euro = "\xe2\x82\xac";
  const std::string text = std::string(longest - 1, 'a') + euro + "b";
  splitter.add(text, &lines);
  splitter.finish(&lines);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "(pid=7, node=w1) " + std::string(longest - 1, 'a'));
  EXPECT_EQ(lines[1], "(pid=7, node=w1) " + euro + "b");
}

TEST(OutputLinesTest, BytesThatAreNotUtf8AreReplaced) {
  EXPECT_EQ(net::valid_utf8("plain \xc3\xa9t\xc3\xa9"), "plain \xc3\xa9t\xc3\xa9");
  EXPECT_EQ(net::valid_utf8("\xff"), "\xef\xbf\xbd");
  EXPECT_EQ(net::valid_utf8("cut \xe2\x82"), "cut \xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(net::valid_utf8("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd");  // overlong '/'
  EXPECT_EQ(net::valid_utf8("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // surrogate
  EXPECT_EQ(net::valid_utf8("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");                  // U+1F600
}

}  // namespace
}  // namespace sage::cluster
