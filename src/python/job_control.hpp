// What a Python job needs from the engine besides its graph: waiting for a
// job in a way Ctrl-C can interrupt, and advice a Python user can act on when
// a task process builds a different dataflow than the one submitted.
#pragma once

#include "sage/environment.hpp"
#include "sage/job_result.hpp"

namespace sage::python {

// GIL held. Waits for the job of `env` with the GIL released, handling the
// interpreter's signals every 100 ms: when a handler raises (Ctrl-C's
// KeyboardInterrupt), stops the job, waits for it to end and throws
// pybind11::error_already_set with that exception. Otherwise returns, or
// throws, what env.wait() does.
JobResult wait_interruptibly(sage::Environment& env);

// Makes the error for a plan that differs in a task process give the Python
// advice (is_task_process(), PYTHONHASHSEED) instead of the C++ one.
void set_python_plan_advice();

}  // namespace sage::python
