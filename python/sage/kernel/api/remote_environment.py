"""RemoteEnvironment: runs the job on a sage cluster (`sage cluster start --head`).

The script is the job, as a C++ program is: submit() sends the plan, the
interpreter (by content hash), the script's arguments and working directory to
the JobManager, and every worker node runs ``python3 script.py args`` again as
a task process. There the script rebuilds the same dataflow (its fingerprint is
checked) and submit() runs that process's share of the instances, then ends
the process. So code before submit() runs in every task process: keep side
effects after it, or guard them with ``is_task_process()``.
"""

import sys

from sage import _native
from sage.kernel.api.base_environment import BaseEnvironment

DEFAULT_PORT = 19001


def is_task_process():
    """True in a task process a worker started for a job (False where you ran the script)."""
    return _native.is_task_process()


class RemoteEnvironment(BaseEnvironment):
    """``RemoteEnvironment(name, host="127.0.0.1", port=19001)``: the cluster's JobManager.
    ``$SAGE_ADDRESS`` (host:port) overrides host and port; the token comes from
    ``config["token"]``, ``$SAGE_TOKEN`` or the head's token file in ``config["state_dir"]``
    (``$SAGE_STATE_DIR``, ``~/.sage``)."""

    def __init__(self, name="remote_environment", config=None, host="127.0.0.1", port=DEFAULT_PORT):
        config = dict(config or {})
        native = _native.Environment(
            name, host, int(port), str(config.get("token", "")), str(config.get("state_dir", "")),
            config,
        )
        super().__init__(name, config, native)

    def submit(self, autostop=False):
        """Submits the job and returns its id; with autostop, streams the instances' output
        and returns when the job has ended (JobFailedError if it failed)."""
        if is_task_process():
            # The process ends inside submit(): every line must reach the worker as written.
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
                stream.reconfigure(line_buffering=True, write_through=True)
        return super().submit(autostop)
