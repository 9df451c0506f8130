// What the head knows of the cluster, behind its one mutex, as LevelDB's
// DBImpl keeps its VersionSet: the nodes and the jobs. The services and the
// head's monitor thread hold `mutex` for every look and change, and notify
// `changed` after a change, which the streams (a worker's commands, a
// followed job) and Head::wait() wait for.
#pragma once

#include <chrono>
#include <string>

#include "cluster/job_table.hpp"
#include "cluster/mutex.hpp"
#include "cluster/node_registry.hpp"

namespace sage::cluster {

// How often a stream that waits (a worker's commands, a followed job) checks
// whether its client went away: a worker that dies is noticed this fast.
constexpr auto kStreamPoll = std::chrono::milliseconds(50);

struct HeadState {
  // Loads the recorded jobs; throws sage::Error when the database refuses.
  HeadState(JobStore& store, ProgramStore& programs, const std::string& token, int job_history,
            const std::string& checkpoint_base)
      : jobs(store, programs, nodes, token, job_history, checkpoint_base) {}

  Mutex mutex;
  ConditionVariable changed;
  // Guarded by mutex.
  bool shutting_down SAGE_GUARDED_BY(mutex) = false;
  NodeRegistry nodes SAGE_GUARDED_BY(mutex);
  JobTable jobs SAGE_GUARDED_BY(mutex);
};

}  // namespace sage::cluster
