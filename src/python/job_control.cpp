#include "python/job_control.hpp"

#include <pybind11/pybind11.h>

#include <chrono>
#include <future>

#include "cluster/task_process.hpp"

namespace py = pybind11;

namespace sage::python {

JobResult wait_interruptibly(sage::Environment& env) {
  constexpr auto kSignalCheck = std::chrono::milliseconds(100);
  std::future<JobResult> result;
  {
    py::gil_scoped_release unlocked;
    result = std::async(std::launch::async, [&env] { return env.wait(); });
  }
  while (true) {
    {
      py::gil_scoped_release unlocked;
      if (result.wait_for(kSignalCheck) == std::future_status::ready) break;
    }
    if (PyErr_CheckSignals() != 0) {
      py::error_already_set interrupted;  // takes the exception: other threads run Python now
      {
        py::gil_scoped_release unlocked;
        env.stop();
        result.wait();
      }
      try {
        result.get();
      } catch (const std::exception&) {
        // The job ended because it was stopped; the interruption is the news.
      }
      throw interrupted;
    }
  }
  return result.get();
}

void set_python_plan_advice() {
  cluster::set_plan_mismatch_advice(
      "the script must build the same dataflow in every run: keep code that depends on time, "
      "randomness, input files or the environment after submit() or under "
      "`if not is_task_process():` (sage.kernel.api.remote_environment), and do not let the "
      "graph depend on the iteration order of sets or dicts of str (run the script with "
      "PYTHONHASHSEED=0, as `sage job submit script.py` does; task processes get the "
      "submitter's PYTHONHASHSEED, 0 when it has none)");
}

}  // namespace sage::python
