#include "python/settings.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

#include "sage/error.hpp"

namespace py = pybind11;

namespace sage::python {

namespace {

// The type and value of a Python object, for errors ("str '4'").
std::string described(const py::handle& value) {
  return std::string(Py_TYPE(value.ptr())->tp_name) + " " + py::repr(value).cast<std::string>();
}

}  // namespace

// An operator's parallelism as given: None (the default) or a whole number; the
// engine checks its range.
std::optional<int> parallelism_of(const py::handle& parallelism) {
  if (parallelism.is_none()) return std::nullopt;
  if (!PyLong_Check(parallelism.ptr()) || PyBool_Check(parallelism.ptr())) {
    throw InvalidPlanError("parallelism must be a whole number of instances (1 or more), got " +
                           described(parallelism));
  }
  const auto number = parallelism.cast<py::int_>();
  if (number < py::int_(-1) || number > py::int_(1 << 20)) {
    throw InvalidPlanError("parallelism is " + described(parallelism) +
                           "; it must be a whole number of instances (1 or more)");
  }
  return number.cast<int>();
}

// name, parallelism and resources as the engine's Options.
Options make_options(const std::string& name, const py::handle& parallelism,
                     const py::handle& resources_given) {
  Options options{
      .name = name, .parallelism = parallelism_of(parallelism), .resources = std::nullopt};
  if (!resources_given.is_none()) {
    if (!PyDict_Check(resources_given.ptr())) {
      throw InvalidPlanError(
          "resources must be a dict of num_cpus, memory (e.g. \"8GB\") and num_gpus, got " +
          described(resources_given));
    }
    const auto resources = py::reinterpret_borrow<py::dict>(resources_given);
    Resources r;
    for (const auto& [key, value] : resources) {
      const auto field = py::str(key).cast<std::string>();
      if (field == "num_cpus") {
        if ((!PyLong_Check(value.ptr()) && !PyFloat_Check(value.ptr())) ||
            PyBool_Check(value.ptr())) {
          throw InvalidPlanError("resources: num_cpus must be a number, got " + described(value));
        }
        r.num_cpus = value.cast<double>();
      } else if (field == "memory") {
        r.memory = py::str(value).cast<std::string>();
      } else if (field == "num_gpus") {
        if (!PyLong_Check(value.ptr()) || PyBool_Check(value.ptr())) {
          throw InvalidPlanError("resources: num_gpus must be a whole number, got " +
                                 described(value));
        }
        r.num_gpus = value.cast<int>();
      } else {
        throw InvalidPlanError("resources: unknown field '" + field +
                               "'; the fields are num_cpus, memory (e.g. \"8GB\") and num_gpus");
      }
    }
    options.resources = r;
  }
  return options;
}

namespace {

// config[field] as a number of seconds (an int or a float, 0 or more).
double seconds_in(const std::string& field, const py::handle& value) {
  const bool number =
      (PyLong_Check(value.ptr()) || PyFloat_Check(value.ptr())) && !PyBool_Check(value.ptr());
  const double seconds = number ? value.cast<double>() : -1;
  if (!number || !(seconds >= 0) || seconds > 1e9) {
    throw InvalidPlanError("config['" + field + "'] must be a number of seconds (0 or more), got " +
                           described(value));
  }
  return seconds;
}

// config[field] as a whole number from `least` up.
std::int64_t whole_in(const std::string& field, const py::handle& value, std::int64_t least) {
  if (!PyLong_Check(value.ptr()) || PyBool_Check(value.ptr())) {
    throw InvalidPlanError("config['" + field + "'] must be a whole number, got " +
                           described(value));
  }
  const auto number = value.cast<py::int_>();
  if (number < py::int_(least) || number > py::int_(std::int64_t{1} << 40)) {
    throw InvalidPlanError("config['" + field + "'] is " + described(value) +
                           "; it must be a whole number from " + std::to_string(least) + " up");
  }
  return number.cast<std::int64_t>();
}

// config[field] as one of two names, `first` or `second`: which of their
// values it names.
template <class E>
E one_of(const std::string& field, const py::handle& value, std::pair<const char*, E> first,
         std::pair<const char*, E> second) {
  const auto name = py::str(value).cast<std::string>();
  if (name == first.first) return first.second;
  if (name == second.first) return second.second;
  throw InvalidPlanError("config " + field + ": '" + name + "'; use \"" + first.first + "\" or \"" +
                         second.first + "\"");
}

}  // namespace

// The engine settings a job's config dict may hold (the other keys are the
// user's own): the data plane's batches, checkpoints and restarts; times in
// seconds.
ExecutionConfig execution_config(const py::dict& config) {
  ExecutionConfig execution;
  const auto millis = [](const std::string& field, const py::handle& seconds) {
    return std::chrono::milliseconds(static_cast<std::int64_t>(seconds_in(field, seconds) * 1e3));
  };
  for (const auto& [key, value] : config) {
    const auto field = py::str(key).cast<std::string>();
    if (field == "batch_size") {
      execution.batch_size = static_cast<std::size_t>(whole_in(field, value, 1));
    } else if (field == "channel_capacity") {
      execution.channel_capacity = static_cast<std::size_t>(whole_in(field, value, 1));
    } else if (field == "linger") {
      execution.linger =
          std::chrono::microseconds(static_cast<std::int64_t>(seconds_in(field, value) * 1e6));
    } else if (field == "checkpoint_interval") {
      execution.checkpoint_interval = millis(field, value);
    } else if (field == "checkpoint_timeout") {
      execution.checkpoint_timeout = millis(field, value);
    } else if (field == "checkpoint_directory") {
      execution.checkpoint_directory = py::str(value).cast<std::string>();
    } else if (field == "checkpoint_mode") {
      execution.checkpoint_mode =
          one_of(field, value, std::pair{"exactly_once", CheckpointMode::kExactlyOnce},
                 std::pair{"at_least_once", CheckpointMode::kAtLeastOnce});
    } else if (field == "task_scheduling") {
      execution.task_scheduling =
          one_of(field, value, std::pair{"throughput", TaskScheduling::kThroughput},
                 std::pair{"normal", TaskScheduling::kNormal});
    } else if (field == "retained_checkpoints") {
      execution.retained_checkpoints = static_cast<int>(whole_in(field, value, 1));
    } else if (field == "restart_attempts") {
      execution.restart_attempts = static_cast<int>(whole_in(field, value, 0));
    } else if (field == "restart_delay") {
      execution.restart_delay = millis(field, value);
    }
  }
  execution.validate();
  return execution;
}

}  // namespace sage::python
