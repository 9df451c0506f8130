// A task process of the sample job, as a worker would start it: the
// assignment comes in SAGE_TASK_ASSIGNMENT, the data-plane socket as fd
// SAGE_DATA_FD. Prints its sink records, then one "instance" line per
// instance it ran. Exits 1 with the error on failure.
#include <cstdio>
#include <cstdlib>

#include "cluster/task_process.hpp"
#include "integration/sample_job.hpp"

int main(int argc, char** argv) {
  const long long records = argc > 1 ? std::atoll(argv[1]) : 10'000;
  try {
    const char* assignment = std::getenv("SAGE_TASK_ASSIGNMENT");
    const char* fd = std::getenv("SAGE_DATA_FD");
    if (assignment == nullptr || fd == nullptr) {
      std::fprintf(stderr, "SAGE_TASK_ASSIGNMENT and SAGE_DATA_FD must be set\n");
      return 2;
    }
    sage::testing::BuildOnlyEnvironment env;
    sage::testing::build_sample_job(env, records);
    const auto result = sage::cluster::run_task_process(
        env.graph(), env.config(), sage::cluster::TaskAssignment::decode(assignment),
        sage::net::Socket(std::atoi(fd)), {}, [](const sage::cluster::RunningTasks* tasks) {
          if (tasks == nullptr) return;
          std::printf("running\n");
          std::fflush(stdout);
        });
    if (result.state != sage::JobState::kFinished) {
      std::printf("failed: %s\n", result.error.c_str());
      return 1;
    }
    for (const auto& s : result.instances) {
      std::printf("instance %s %d %d %llu %llu\n", s.operator_name.c_str(), s.parallel_index,
                  s.process_id, static_cast<unsigned long long>(s.records_in),
                  static_cast<unsigned long long>(s.records_out));
    }
    return 0;
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
}
