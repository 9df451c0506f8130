// What a Python program passes as settings, checked where it enters with
// one-line errors (sage.InvalidPlanError) that name the key and the value's
// type: an operator's name, parallelism and resources, and the engine settings
// of a job's config dict.
#pragma once

#include <pybind11/pybind11.h>

#include <optional>
#include <string>

#include "sage/options.hpp"

namespace sage::python {

// An operator's parallelism as given: None (the default) or a whole number;
// the engine checks its range.
std::optional<int> parallelism_of(const pybind11::handle& parallelism);

// name, parallelism and resources (None or a dict of num_cpus, memory,
// num_gpus) as the engine's Options.
Options make_options(const std::string& name, const pybind11::handle& parallelism,
                     const pybind11::handle& resources);

// The engine settings a job's config dict may hold (the other keys are the
// user's own): batch_size, channel_capacity, linger, task_scheduling, the
// checkpoint and restart settings; times in seconds.
ExecutionConfig execution_config(const pybind11::dict& config);

}  // namespace sage::python
