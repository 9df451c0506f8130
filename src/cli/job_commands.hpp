// `sage job ...`: list, inspect, follow, stop and submit the jobs of the
// cluster at GlobalOptions::address. Each command returns the exit code;
// errors are sage::Error (CLI::ValidationError for a bad command line).
#pragma once

#include <string>
#include <vector>

#include "cli/global_options.hpp"

namespace sage::cli {

int job_list(const GlobalOptions& global);
int job_status(const GlobalOptions& global, const std::string& job_id);
// Prints the job's output so far; with `follow`, until the job ends.
int job_logs(const GlobalOptions& global, const std::string& job_id, bool follow);
// Returns once every node has ended the job's processes (or after 30 s, an error).
int job_stop(const GlobalOptions& global, const std::string& job_id);
// Runs `command` (a program and its arguments) with the cluster's address and
// token in its environment, so that its RemoteEnvironment submits to this
// cluster, and passes on the signals sent to this command. Returns its exit
// code; a program that ends without submitting a job is an error. A Python
// script (.py, or a #! line naming python) runs as `python3 script args`
// with the interpreter sage was built for ($SAGE_PYTHON overrides) and
// PYTHONHASHSEED=0 unless set.
int job_submit(const GlobalOptions& global, const std::vector<std::string>& command);

}  // namespace sage::cli
