"""LocalEnvironment: runs the job on this machine.

By default the job runs inside this Python process, every parallel instance of every operator
on its own thread of the C++ engine. Those threads share one GIL, so CPU-bound Python operators
use one core together. ``config={"processes": N}`` runs the job in N task processes instead,
each with its own interpreter and GIL: a throwaway local cluster (local_cluster.py) runs the
script as a RemoteEnvironment's job with ``processes_per_node=N``, and is torn down when the
environment closes (docs/python.md, "The GIL and processes").
"""

import contextlib
import os
import threading

from sage import _native
from sage.kernel.api.base_environment import BaseEnvironment, count_setting
from sage.kernel.api.local_cluster import LocalCluster, script_of_this_run
from sage.kernel.api.remote_environment import RemoteEnvironment, is_task_process


@contextlib.contextmanager
def _without(variable):
    """Hides an environment variable for the duration (for the engine's getenv too)."""
    saved = os.environ.pop(variable, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[variable] = saved


class LocalEnvironment(BaseEnvironment):
    """``LocalEnvironment("my_job")``: build the dataflow from its sources, then
    ``submit(autostop=True)`` or ``execute()``. ``config={"processes": N}`` (1 to 64, default 1)
    runs the job in N task processes of this machine rather than in this process; the script
    then runs again in each of them, as with RemoteEnvironment."""

    def __init__(self, name="localenvironment", config=None, platform="local"):
        if platform != "local":
            raise ValueError(f"LocalEnvironment: platform {platform!r} is not supported; 'local'")
        config = dict(config or {})
        processes = count_setting(config, "processes", "LocalEnvironment")
        self._cluster = None
        self._remote = None
        if processes == 1:
            super().__init__(name, config, _native.Environment(name, config))
            return
        if is_task_process():
            # A task process of the local cluster: it runs its share at submit().
            self._remote = RemoteEnvironment(name, {**config, "processes_per_node": processes})
        else:
            script_of_this_run()  # before anything starts: the task processes re-run it
            self._cluster = LocalCluster()
            try:
                with _without("SAGE_ADDRESS"):
                    self._remote = RemoteEnvironment(
                        name,
                        {
                            **config,
                            "token": self._cluster.token,
                            "state_dir": self._cluster.state_dir,
                            "processes_per_node": processes,
                        },
                        host=self._cluster.host,
                        port=self._cluster.port,
                    )
            except BaseException:
                self._cluster.stop()
                raise
        super().__init__(name, config, self._remote._native)

    def submit(self, autostop=False):
        if self._remote is None:  # in this process
            return super().submit(autostop)
        if self._cluster is None:  # a task process: runs its share and exits
            return self._remote.submit(autostop)
        return self._interruptible(lambda: self._remote.submit(autostop))

    def wait(self):
        if self._cluster is None:
            return super().wait()
        return self._interruptible(super().wait)

    def _interruptible(self, call):
        """call(), which waits on the local cluster's job, on a thread of its own, so that
        Ctrl-C here stops the cluster (and with it the job's processes) before it propagates;
        call()'s result or exception."""
        outcome = {}

        def run():
            try:
                outcome["value"] = call()
            except BaseException as error:  # handed to the caller's thread
                outcome["error"] = error

        thread = threading.Thread(target=run, name="sage-local-job", daemon=True)
        thread.start()
        try:
            thread.join()
        except KeyboardInterrupt:
            self._cluster.stop()  # the job ends with it, and so does call()
            thread.join(timeout=30)
            if not thread.is_alive():
                self.close()
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def close(self):
        """Stops a job still running, waits for it and frees the environment; with
        ``processes``, also stops the local cluster."""
        cluster, self._cluster = self._cluster, None
        try:
            if cluster is not None:
                # The job's processes end with the cluster; the environment then has nothing
                # left to wait for.
                cluster.stop()
            if self._remote is not None:
                self._remote.close()
        finally:
            super().close()
