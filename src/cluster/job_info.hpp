// Conversions between the control plane's job messages and the public
// JobResult, shared by RemoteEnvironment, task processes, the head and the
// `sage` command.
#pragma once

#include "sage.pb.h"
#include "sage/job_result.hpp"

namespace sage::cluster {

// Whether a job in `state` has ended: FINISHED, FAILED or STOPPED.
bool is_final(rpc::JobInfo::State state);

// The job as a JobResult: state, error, duration, and its instances ordered
// by operator, then instance.
JobResult to_job_result(const rpc::JobInfo& info);

// One instance's statistics as the control plane carries them.
void to_message(const InstanceStats& stats, rpc::InstanceStats* out);

// Orders instances as JobResult does: by operator (program order), then instance.
void sort_instances(google::protobuf::RepeatedPtrField<rpc::InstanceStats>* instances);

// A task process's live statistics: `now`, with rates and backpressure over
// the time since `before` (the previous report of the same process, or null).
rpc::ProgressReport progress_report(const JobResult& now, const JobResult* before);

}  // namespace sage::cluster
