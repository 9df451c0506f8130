#include "cluster/lease.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include "cluster/cluster_config.hpp"
#include "sage/error.hpp"

namespace sage::cluster {
namespace {

// The worker and its task processes share the expiry through memory only.
static_assert(std::atomic_ref<std::int64_t>::is_always_lock_free);

std::int64_t to_ns(Lease::Clock::time_point time) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
}

std::int64_t now_ns() { return to_ns(Lease::Clock::now()); }

}  // namespace

Lease::Lease() {
  fd_ = memfd_create("sage-lease", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd_ < 0)
    throw Error(std::string("cannot create the task processes' lease: ") + strerror(errno));
  void* mapped = MAP_FAILED;
  // Sealed at its size: a task process cannot make the worker's mapping fault.
  if (ftruncate(fd_, sizeof *expiry_ns_) == 0 &&
      fcntl(fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0) {
    mapped = mmap(nullptr, sizeof *expiry_ns_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  }
  if (mapped == MAP_FAILED) {
    const std::string why = strerror(errno);
    ::close(fd_);
    throw Error("cannot create the task processes' lease: " + why);
  }
  expiry_ns_ = static_cast<std::int64_t*>(mapped);  // zero: expired
}

Lease::~Lease() {
  munmap(expiry_ns_, sizeof *expiry_ns_);
  ::close(fd_);
}

void Lease::grant(Clock::time_point expiry) { std::atomic_ref(*expiry_ns_).store(to_ns(expiry)); }

bool Lease::renew(Clock::time_point expiry) {
  std::atomic_ref current(*expiry_ns_);
  const std::int64_t before = current.load();
  if (now_ns() >= before) return false;
  current.store(to_ns(expiry));
  if (now_ns() < before) return true;
  // Too late: a watcher that read `before` after it passed ended its process.
  current.store(before);
  return false;
}

bool Lease::expired() const { return now_ns() >= std::atomic_ref(*expiry_ns_).load(); }

void watch_lease(int fd) {
  struct stat file {};
  void* mapped = MAP_FAILED;
  if (fstat(fd, &file) == 0 && file.st_size >= static_cast<off_t>(sizeof(std::int64_t))) {
    mapped = mmap(nullptr, sizeof(std::int64_t), PROT_READ, MAP_SHARED, fd, 0);
  }
  if (mapped == MAP_FAILED) {
    throw Error(std::string(kLeaseFdVariable) + "=" + std::to_string(fd) +
                " is not the lease of a sage worker: start task processes through `sage cluster "
                "start` workers, or unset " +
                kLeaseFdVariable);
  }
  ::close(fd);
  // The thread takes no signals: those the process waits for (as a task
  // process does for SIGTERM) must not end it by their default action here.
  sigset_t all, before;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &before);
  std::thread([expiry_ns = static_cast<std::int64_t*>(mapped)] {
    while (true) {
      // The time before the expiry: a renewal that this load misses comes
      // after the expiry, and the worker counts it as too late.
      const std::int64_t now = now_ns();
      const std::int64_t expiry = std::atomic_ref(*expiry_ns).load();
      if (now >= expiry) {
        // Nothing is written first: the worker may be frozen with the output pipe full.
        ::kill(getpgrp() == getpid() ? 0 : getpid(), SIGKILL);
      }
      std::this_thread::sleep_for(std::chrono::nanoseconds(expiry - now));
    }
  }).detach();  // lives until the process ends
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
}

}  // namespace sage::cluster
