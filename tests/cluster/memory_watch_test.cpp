#include "cluster/memory_watch.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

namespace sage::cluster {
namespace {

constexpr std::size_t kMiB = 1 << 20;

// A child process (leader of its own process group) that touches `bytes` of
// fresh memory, writes one byte to the returned pipe, and waits to be killed.
struct Hog {
  pid_t pid = -1;
  int ready_fd = -1;

  explicit Hog(std::size_t bytes) {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      void* memory =
          mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (memory == MAP_FAILED) _exit(2);
      std::memset(memory, 1, bytes);
      const char ready = 'r';
      if (write(fds[1], &ready, 1) != 1) _exit(3);
      for (;;) pause();
    }
    setpgid(pid, pid);  // no race with the child's own call: either makes the group
    close(fds[1]);
    ready_fd = fds[0];
  }
  ~Hog() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (ready_fd >= 0) close(ready_fd);
  }
  bool wait_ready() const {
    char byte = 0;
    return read(ready_fd, &byte, 1) == 1;
  }
  // The signal that ended it, reaping it; 0 if it has not ended.
  int take_signal() {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) != pid) return 0;
    pid = -1;
    return WIFSIGNALED(status) ? WTERMSIG(status) : -1;
  }
};

TEST(MemoryWatchTest, ResidentBytesSeeTouchedMemoryAndNothingOfAnEndedProcess) {
  Hog hog(64 * kMiB);
  ASSERT_GT(hog.pid, 0);
  ASSERT_TRUE(hog.wait_ready());
  const auto used = resident_bytes(hog.pid);
  ASSERT_TRUE(used.has_value());
  EXPECT_GE(*used, 64 * kMiB);
  EXPECT_LT(*used, 64 * kMiB + 512 * kMiB);

  kill(hog.pid, SIGKILL);
  waitpid(hog.pid, nullptr, 0);
  EXPECT_EQ(resident_bytes(hog.pid), std::nullopt);
  hog.pid = -1;
}

TEST(MemoryWatchTest, AProcessOverItsLimitIsKilledWithAVerdictSayingByHowMuch) {
  Hog hog(128 * kMiB);
  ASSERT_GT(hog.pid, 0);
  ASSERT_TRUE(hog.wait_ready());
  MemoryWatch watch(hog.pid, 64 * kMiB, "w7");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int signal = 0;
  while (signal == 0 && std::chrono::steady_clock::now() < deadline) {
    watch.check();
    signal = hog.take_signal();
  }
  EXPECT_EQ(signal, SIGKILL) << "the process over its limit was not killed within 10 s";
  EXPECT_NE(watch.verdict().find("the task process on node 'w7' used 1"), std::string::npos)
      << watch.verdict();
  EXPECT_NE(watch.verdict().find(" MiB of memory, over the 64 MiB its instances declare"),
            std::string::npos)
      << watch.verdict();
}

TEST(MemoryWatchTest, AProcessWithinItsLimitOrWithoutOneIsLeftAlone) {
  Hog hog(16 * kMiB);
  ASSERT_GT(hog.pid, 0);
  ASSERT_TRUE(hog.wait_ready());
  MemoryWatch within(hog.pid, 1024 * kMiB, "w1");
  MemoryWatch unlimited(hog.pid, 0, "w1");
  // Checks over a few of the worker's intervals.
  const auto until = std::chrono::steady_clock::now() + 4 * kMemoryCheckInterval;
  while (std::chrono::steady_clock::now() < until) {
    within.check();
    unlimited.check();
    std::this_thread::sleep_for(kMemoryCheckInterval / 4);  // pacing, not synchronisation
  }
  EXPECT_EQ(hog.take_signal(), 0);
  EXPECT_EQ(within.verdict(), "");
  EXPECT_EQ(unlimited.verdict(), "");
}

// A task process that has ended but is not reaped yet (the worker's state
// while it reports the exit) holds no memory and is not killed again.
TEST(MemoryWatchTest, AnEndedProcessNotYetReapedIsLeftAlone) {
  Hog hog(16 * kMiB);
  ASSERT_GT(hog.pid, 0);
  ASSERT_TRUE(hog.wait_ready());
  ASSERT_EQ(kill(hog.pid, SIGTERM), 0);
  siginfo_t ended{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(hog.pid), &ended, WEXITED | WNOWAIT), 0);
  EXPECT_EQ(resident_bytes(hog.pid), 0u);
  MemoryWatch watch(hog.pid, 1, "w1");
  watch.check();
  EXPECT_EQ(watch.verdict(), "");
  EXPECT_EQ(hog.take_signal(), SIGTERM);
}

}  // namespace
}  // namespace sage::cluster
