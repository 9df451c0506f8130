// The lease by which a worker lets its task processes run (fencing): the
// worker renews it while the head hears from it, and a task process whose
// lease expires ends itself, also when its worker is frozen and cannot act.
// The head counts a node silent for kNodeTimeout as dead and fails its jobs;
// the lease expires no later, so no task process works on for a failed job.
#pragma once

#include <chrono>
#include <cstdint>

namespace sage::cluster {

// Held by the worker: an expiry time in a small memory file that each task
// process maps through an inherited descriptor (see watch_lease). Times are
// std::chrono::steady_clock's (CLOCK_MONOTONIC, the same in every process of
// a machine). One thread at a time grants and renews; any may ask expired().
class Lease {
 public:
  using Clock = std::chrono::steady_clock;

  // Expired until granted. Throws sage::Error if the memory file cannot be made.
  Lease();
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  // What a task process is given (close-on-exec here; dup it into the child).
  int fd() const { return fd_; }

  // A new term until `expiry`, whether or not the lease had expired.
  // REQUIRES: no task process of an earlier term is still running.
  void grant(Clock::time_point expiry);
  // Extends the lease to `expiry`; false, changing nothing, if it expired
  // before this took effect: the task processes may have ended themselves.
  // An expired lease stays expired until the next grant().
  bool renew(Clock::time_point expiry);
  bool expired() const;

 private:
  int fd_ = -1;
  std::int64_t* expiry_ns_ = nullptr;  // shared with the task processes
};

// In a task process: starts a thread that, once the lease in `fd` (from
// Lease::fd() of its worker) expires, kills this process and, when it leads
// its process group (as task processes do), every process in the group.
// Closes `fd`. Throws sage::Error if `fd` holds no lease.
void watch_lease(int fd);

}  // namespace sage::cluster
