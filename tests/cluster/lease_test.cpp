#include "cluster/lease.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "sage/error.hpp"

namespace sage::cluster {
namespace {

using namespace std::chrono_literals;
using Clock = Lease::Clock;

TEST(Lease, IsExpiredUntilGrantedAndFromItsExpiryOn) {
  Lease lease;
  EXPECT_TRUE(lease.expired());
  lease.grant(Clock::now() + 1h);
  EXPECT_FALSE(lease.expired());
  lease.grant(Clock::now() - 1ms);
  EXPECT_TRUE(lease.expired());
}

TEST(Lease, IsRenewedOnlyWhileItHasNotExpired) {
  Lease lease;
  lease.grant(Clock::now() + 1h);
  EXPECT_TRUE(lease.renew(Clock::now() + 2h));
  EXPECT_FALSE(lease.expired());

  lease.grant(Clock::now() - 1ms);
  EXPECT_FALSE(lease.renew(Clock::now() + 1h)) << "the task processes may have ended already";
  EXPECT_TRUE(lease.expired()) << "an expired lease stays expired until the next grant";
}

// Alive and not a zombie.
bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, command, state;
  return kill(pid, 0) == 0 && (stat >> pid_field >> command >> state) && state != "Z";
}

// A task process stand-in: leads its own process group, watches the lease,
// starts a child in its group, tells the child's pid through the pipe, and
// waits to be killed.
struct Watcher {
  pid_t pid = -1;
  pid_t child = -1;

  explicit Watcher(const Lease& lease) {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      watch_lease(dup(lease.fd()));
      const pid_t grandchild = fork();
      if (grandchild == 0) {
        for (;;) pause();
      }
      if (write(fds[1], &grandchild, sizeof grandchild) != sizeof grandchild) _exit(3);
      for (;;) pause();
    }
    close(fds[1]);
    if (read(fds[0], &child, sizeof child) != sizeof child) child = -1;
    close(fds[0]);
  }
  ~Watcher() {
    if (pid > 0) {
      kill(-pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

TEST(Lease, AWatchedProcessRunsWhileTheLeaseIsRenewedAndItsGroupIsKilledAtItsExpiry) {
  Lease lease;
  lease.grant(Clock::now() + 1s);
  Watcher watcher(lease);
  ASSERT_GT(watcher.child, 0) << "the watched process did not start";

  // Renewed 1 s ahead every 100 ms, for twice the lease's length.
  const auto renewing_until = Clock::now() + 2s;
  while (Clock::now() < renewing_until) {
    ASSERT_TRUE(lease.renew(Clock::now() + 1s));
    std::this_thread::sleep_for(100ms);
  }
  int status = 0;
  ASSERT_EQ(waitpid(watcher.pid, &status, WNOHANG), 0) << "ended although the lease was renewed";

  const auto expiry = Clock::now() + 300ms;
  ASSERT_TRUE(lease.renew(expiry));
  ASSERT_EQ(waitpid(watcher.pid, &status, 0), watcher.pid);
  const auto ended = Clock::now();
  watcher.pid = -1;
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  EXPECT_GE(ended, expiry) << "ended before its lease expired";
  EXPECT_LT(ended, expiry + 1s) << "ended long after its lease expired";
  // The process it started in its group went with it (reaped by init, or a zombie until then).
  const auto deadline = Clock::now() + 5s;
  while (alive(watcher.child) && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(alive(watcher.child)) << "the watched process's child outlived the lease";
}

TEST(Lease, ADescriptorThatHoldsNoLeaseIsRefusedNamingTheVariable) {
  const int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(null, 0);
  try {
    watch_lease(null);
    ADD_FAILURE() << "/dev/null was taken for a lease";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("SAGE_LEASE_FD=" + std::to_string(null) + " is not"),
              std::string::npos)
        << e.what();
  }
  close(null);
}

}  // namespace
}  // namespace sage::cluster
