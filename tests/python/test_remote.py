"""RemoteEnvironment from Python on a throwaway local cluster (a head and a worker started with
the `sage` command in a private state directory, on ports the system picks): the reference
example's script runs as the job, its task processes re-running it, with the C++ example's
output and exactly the ten multiples of 3 at the sinks."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "python" / "parallelism_remote_validation.py"


def sage_cli():
    cli = os.environ.get("SAGE_CLI")
    if not cli:
        pytest.fail(
            "SAGE_CLI is not set: run the Python tests through ctest (ctest --test-dir build -R "
            "python), which points it at build/bin/sage"
        )
    return cli


@pytest.fixture
def cluster(tmp_path):
    cli = sage_cli()
    env = dict(os.environ, SAGE_STATE_DIR=str(tmp_path))
    for variable in ("SAGE_ADDRESS", "SAGE_TOKEN"):
        env.pop(variable, None)

    def sage(*args):
        return subprocess.run([cli, *args], env=env, capture_output=True, text=True, timeout=60)

    try:
        started = sage("cluster", "start", "--head", "--port", "0", "--jobmanager-port", "0",
                       "--dashboard-port", "0")
        assert started.returncode == 0, started.stderr
        head = json.loads((tmp_path / "head.json").read_text())
        worker = sage("cluster", "start", "--worker", f"--head-address={head['cluster']}",
                      "--node-id", "worker-1")
        assert worker.returncode == 0, worker.stderr
        yield env
    finally:
        sage("cluster", "stop")


def job_script(tmp_path, name, text):
    """The script `name` in a directory of its own (its bundle), not the state directory."""
    job = tmp_path / "job"
    job.mkdir(exist_ok=True)
    script = job / name
    script.write_text(text)
    return script


def test_reference_example_runs_on_a_cluster(cluster):
    run = subprocess.run([sys.executable, str(EXAMPLE)], env=cluster, capture_output=True,
                         text=True, timeout=180)
    out = run.stdout
    assert run.returncode == 0, f"{out}\n{run.stderr}"
    assert "REMOTE ENVIRONMENT - SINGLE STREAM PARALLELISM VALIDATION" in out
    assert "Records reaching the sinks: 10 (expected 10)" in out
    received = sorted(int(v) for v in re.findall(r"🎯 SINK\[.*\] received (\d+)", out))
    assert received == list(range(3, 31, 3))
    for i in range(4):
        assert f"DistMapper[{i}/4]" in out
    for i in range(3):
        assert f"MultipleOfThree[{i}/3]" in out
    # The instances ran in the cluster's task processes, on its nodes.
    nodes = set(re.findall(r"DistProcessor\[DistMapper \d/4 @ (\S+) pid", out))
    assert nodes and nodes <= {"head", "worker-1"}, nodes


FAILING_JOB = """
import threading
import sys
from sage.kernel.api.remote_environment import RemoteEnvironment

def boom(x):
    if x == 5:
        raise ValueError("remote boom")
    return x

env = RemoteEnvironment("remote_failure")
if sys.argv[1] == "raise":
    env.from_collection(list(range(10))).map(boom, parallelism=2).sink(lambda x: None, parallelism=2)
else:
    env.from_collection(list(range(40))).map(lambda x: threading.Lock(), parallelism=2).rebalance() \\
        .sink(lambda x: None, parallelism=2)
env.execute()
"""


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("raise", [r"operator 'map-1' instance \d/2 on node (head|worker-1)",
                   r"Traceback \(most recent call last\)", r'line 8, in boom',
                   r"ValueError: remote boom"]),
        ("unpicklable", [r"a record of type '_thread.lock' cannot be pickled",
                         r"protocol 5"]),
    ],
)
def test_failures_on_a_cluster_carry_the_python_error(cluster, tmp_path, mode, expected):
    script = job_script(tmp_path, "failing_job.py", FAILING_JOB)
    run = subprocess.run([sys.executable, str(script), mode], env=cluster, capture_output=True,
                         text=True, timeout=180)
    assert run.returncode != 0
    assert "sage._native.JobFailedError: job 'remote_failure'" in run.stderr, run.stderr
    for pattern in expected:
        assert re.search(pattern, run.stderr), f"{pattern!r} not in:\n{run.stderr}"


KEYED_JOB = """
import sys
from sage.common.core import SinkFunction
from sage.kernel.api.remote_environment import RemoteEnvironment, is_task_process

class Where(SinkFunction):
    def execute(self, data):
        sys.stdout.write(f"KEY {data[0]} INSTANCE {self.ctx.parallel_index} NODE {self.ctx.node_id}\\n")
        sys.stdout.flush()

env = RemoteEnvironment("keyed_remote")
# "differ": the task processes build another plan than the submitting one.
sink_parallelism = 2 if sys.argv[1] == "differ" and is_task_process() else 4
records = [(f"user-{i % 23}", i) for i in range(400)]
env.from_collection(records).map(lambda r: r, parallelism=3).keyby(lambda r: r[0]) \\
    .sink(Where, parallelism=sink_parallelism)
env.execute()
"""


def test_keyed_routing_across_processes_follows_the_stable_hash(cluster, tmp_path):
    from sage import _native

    script = job_script(tmp_path, "keyed_job.py", KEYED_JOB)
    run = subprocess.run([sys.executable, str(script), "same"], env=cluster, capture_output=True,
                         text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    seen = {}
    nodes = set()
    for key, instance, node in re.findall(r"KEY (\S+) INSTANCE (\d) NODE (\S+)", run.stdout):
        seen.setdefault(key, set()).add(int(instance))
        nodes.add(node)
    assert sum(1 for _ in re.finditer("KEY ", run.stdout)) == 400
    assert len(seen) == 23 and nodes == {"head", "worker-1"}
    for key, instances in seen.items():
        group = _native.stable_key_hash(key) % 128
        assert instances == {group * 4 // 128}, key


def test_a_plan_that_differs_in_a_task_process_is_refused(cluster, tmp_path):
    script = job_script(tmp_path, "keyed_job.py", KEYED_JOB)
    run = subprocess.run([sys.executable, str(script), "differ"], env=cluster,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode != 0
    assert "this process built a different dataflow" in run.stderr, run.stderr
    assert "than the one submitted" in run.stderr, run.stderr
    assert "KEY " not in run.stdout
