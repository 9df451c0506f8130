"""RemoteEnvironment: runs the job on a sage cluster (`sage cluster start --head`).

The script is the job, as a C++ program is: submit() sends the plan, the
interpreter and the script's directory (a bundle of its regular files, each
uploaded once per content hash, the bundle at most 64 MiB) and the script's
arguments to the JobManager. Every node unpacks the bundle into a directory
named by its hash and runs ``python3 script.py args`` there as a task process,
with the submitter's PYTHONHASHSEED (0 when it has none), so modules beside the
script import. There the script rebuilds the same dataflow (its fingerprint is
checked) and submit() runs that process's share of the instances, then ends the
process. So code before submit() runs in every task process: keep side effects
after it, or guard them with ``is_task_process()``.
"""

import os
import re
import sys

from sage import _native
from sage.kernel.api.base_environment import BaseEnvironment, count_setting
from sage.middleware.operators.rag import collections_dir

DEFAULT_PORT = 19001


def is_task_process():
    """True in a task process a worker started for a job (False where you ran the script)."""
    return _native.is_task_process()


DEFAULT_MAX_BUNDLE_SIZE = 64 << 20
DEFAULT_MAX_BUNDLE_FILES = 10_000

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20,
          "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}


def _size(value, where):
    """Bytes of a size given as an int or a text such as "256MiB" (units are powers of 1024)."""
    if isinstance(value, int) and value > 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"{where} is {value!r}; give a positive size such as 268435456 or \"256MiB\"")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _task_program(config):
    """The arguments of the interpreter in task processes, the directory to bundle and the
    limits: the script this process runs, with its interpreter options and arguments."""
    argv = list(getattr(sys, "orig_argv", []))
    options = argv[1:len(argv) - len(sys.argv)] if len(argv) > len(sys.argv) else []
    script = sys.argv[0] if sys.argv else ""
    if "-c" in options or "-m" in options or not script or not os.path.isfile(script):
        raise _native.InvalidPlanError(
            "RemoteEnvironment runs the script as the job on every node, so it needs a script "
            "file: start it as `python3 path/to/script.py` or `sage job submit script.py` (not "
            "with -c, -m or interactively)")
    script = os.path.realpath(script)
    if "max_bundle_size" in config:
        max_bytes = _size(config["max_bundle_size"], 'config["max_bundle_size"]')
    elif os.environ.get("SAGE_MAX_BUNDLE_SIZE"):
        max_bytes = _size(os.environ["SAGE_MAX_BUNDLE_SIZE"], "$SAGE_MAX_BUNDLE_SIZE")
    else:
        max_bytes = DEFAULT_MAX_BUNDLE_SIZE
    max_files = int(config.get("max_bundle_files", DEFAULT_MAX_BUNDLE_FILES))
    return dict(
        args=options + [os.path.basename(script)] + sys.argv[1:],
        bundle_directory=os.path.dirname(script),
        max_bundle_bytes=max_bytes,
        max_bundle_files=max_files,
        how_to_raise='raise the limits with RemoteEnvironment(..., config={"max_bundle_size": '
                     '"256MiB", "max_bundle_files": 50000}) or $SAGE_MAX_BUNDLE_SIZE',
        environment=[
            "PYTHONHASHSEED=" + os.environ.get("PYTHONHASHSEED", "0"),
            # A bare RAG collection name means the submitter's directory in the task processes.
            "SAGE_COLLECTIONS_DIR=" + collections_dir(),
        ],
    )


class RemoteEnvironment(BaseEnvironment):
    """``RemoteEnvironment(name, host="127.0.0.1", port=19001)``: the cluster's JobManager.
    ``$SAGE_ADDRESS`` (host:port) overrides host and port; the token comes from
    ``config["token"]``, ``$SAGE_TOKEN`` or the head's token file in ``config["state_dir"]``
    (``$SAGE_STATE_DIR``, ``~/.sage``). ``config["max_bundle_size"]`` (``$SAGE_MAX_BUNDLE_SIZE``,
    default 64 MiB) and ``config["max_bundle_files"]`` (10 000) cap the script's directory.
    ``config["processes_per_node"]`` (default 1): the most task processes the job runs on each
    node, for CPU-bound Python operators (one GIL per process; docs/python.md, "The GIL and
    processes")."""

    def __init__(self, name="remote_environment", config=None, host="127.0.0.1", port=DEFAULT_PORT):
        config = dict(config or {})
        native = _native.Environment(
            name, host, int(port), str(config.get("token", "")), str(config.get("state_dir", "")),
            config,
            count_setting(config, "processes_per_node", "RemoteEnvironment"),
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
        else:
            self._native.set_task_program(**_task_program(self.config))
        return super().submit(autostop)
