"""A throwaway sage cluster on this machine, for LocalEnvironment's ``processes`` option.

``LocalEnvironment(name, config={"processes": N})`` runs the job in N task processes, each with
its own interpreter and GIL, so that CPU-bound Python operators use N cores. It starts a head
(which is also the only node) with the ``sage`` command on 127.0.0.1, on ports the system picks,
in a private state directory with its own token, submits the script to it as RemoteEnvironment
does with ``processes_per_node=N``, and stops the head and removes the directory when the
environment closes, also after a failure or Ctrl-C. This is what scripts/run-example.sh does by
hand.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import sage

# Variables that would point this cluster's clients and processes at another cluster.
_FOREIGN = ("SAGE_ADDRESS", "SAGE_TOKEN", "SAGE_STATE_DIR")


def sage_command():
    """The ``sage`` command: ``$SAGE_CLI``, else the one built next to this package
    (build/bin/sage for build/python), else the one on PATH."""
    cli = os.environ.get("SAGE_CLI")
    if cli:
        return cli
    built = pathlib.Path(sage.__file__).resolve().parents[2] / "bin" / "sage"
    if built.is_file() and os.access(built, os.X_OK):
        return str(built)
    found = shutil.which("sage")
    if found:
        return found
    raise RuntimeError(
        "LocalEnvironment: config['processes'] needs the `sage` command to start its task "
        "processes, and none was found; install sage (cmake --install) or set $SAGE_CLI to "
        "build/bin/sage"
    )


def script_of_this_run():
    """The script being run (its task processes run it again), or a RuntimeError saying why
    there is none."""
    script = sys.argv[0] if sys.argv else ""
    if not script or script == "-c" or not os.path.isfile(script):
        raise RuntimeError(
            "LocalEnvironment: config['processes'] runs the job in task processes that re-run "
            f"the script, but this interpreter runs no script file (sys.argv[0] is {script!r}); "
            "put the job in a file and run `python3 file.py`, or leave 'processes' at 1"
        )
    return script


class LocalCluster:
    """A head started for one job; stop() ends it, its task processes and its directory."""

    def __init__(self):
        self._cli = sage_command()
        self.state_dir = tempfile.mkdtemp(prefix="sage-local-")
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
        env["SAGE_STATE_DIR"] = self.state_dir
        # The task processes (children of the head) import this sage package.
        package_root = str(pathlib.Path(sage.__file__).resolve().parents[1])
        path = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = package_root + (os.pathsep + path if path else "")
        self._env = env
        try:
            started = self._sage(
                "cluster", "start", "--head", "--port", "0", "--jobmanager-port", "0",
                "--dashboard-port", "0",
            )
            if started.returncode != 0:
                raise RuntimeError(
                    "LocalEnvironment: the local head for config['processes'] did not start: "
                    + (started.stderr or started.stdout).strip()
                )
            head = json.loads((pathlib.Path(self.state_dir) / "head.json").read_text())
            host, port = head["jobmanager"].rsplit(":", 1)
            self.host, self.port = host, int(port)
            self.token = (pathlib.Path(self.state_dir) / "token").read_text().strip()
        except BaseException:
            self.stop()
            raise

    def _sage(self, *args):
        return subprocess.run(
            [self._cli, *args], env=self._env, capture_output=True, text=True, timeout=60
        )

    def stop(self):
        """Stops the head and the job's task processes, and removes the state directory."""
        if self.state_dir is None:
            return
        try:
            self._sage("cluster", "stop")
        finally:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None
