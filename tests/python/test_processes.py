"""LocalEnvironment's process option: config={"processes": N} runs the job in N task processes
of a throwaway local cluster (a head started with the `sage` command in a private state
directory), with exact results, and tears everything down when the job ends, fails or is
interrupted with Ctrl-C."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from sage.kernel.api.local_environment import LocalEnvironment
from sage.kernel.api.remote_environment import RemoteEnvironment

JOB = """
import os, sys
from sage.common.core.functions import MapFunction, SinkFunction
from sage.kernel.api.local_environment import LocalEnvironment
from sage.kernel.api.remote_environment import is_task_process

class Square(MapFunction):
    def open(self, ctx):
        print(f"map {ctx.parallel_index} in pid {os.getpid()}", flush=True)
    def execute(self, x):
        if x == int(sys.argv[2]):
            raise ValueError("boom at " + sys.argv[2])
        return x * x

class Total(SinkFunction):
    def __init__(self):
        super().__init__()
        self.total = 0
    def execute(self, x):
        self.total += x
    def close(self):
        print(f"total {self.total}", flush=True)

def endless():
    import time
    time.sleep(0.001)
    return 1

env = LocalEnvironment("processes_job", config={"processes": 2})
if not is_task_process():
    print(f"driver pid {os.getpid()} state {env._cluster.state_dir}", flush=True)
if sys.argv[1] == "endless":
    source = env.from_source(endless)
else:
    source = env.from_collection(range(int(sys.argv[1])))
source.map(Square, parallelism=2).sink(Total, parallelism=1)
result = env.execute()
pids = sorted({i.process_id for i in result.instances if i.operator_name == "Square"})
print("map pids " + " ".join(map(str, pids)), flush=True)
"""


@pytest.fixture
def job(tmp_path):
    if not os.environ.get("SAGE_CLI"):
        pytest.fail("SAGE_CLI is not set: run the Python tests through ctest (ctest --test-dir "
                    "build -R python), which points it at build/bin/sage")
    script = tmp_path / "processes_job.py"
    script.write_text(JOB)
    env = {k: v for k, v in os.environ.items() if k not in ("SAGE_ADDRESS", "SAGE_TOKEN")}
    return script, env


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def state_dir_of(out):
    found = re.search(r"driver pid \d+ state (\S+)", out)
    assert found, out
    return found.group(1)


def test_two_processes_give_exact_results_from_two_task_processes(job):
    script, env = job
    run = subprocess.run([sys.executable, str(script), "20000", "-1"], env=env,
                         capture_output=True, text=True, timeout=180)
    out = run.stdout
    assert run.returncode == 0, f"{out}\n{run.stderr}"
    assert re.findall(r"total (\d+)", out) == [str(sum(x * x for x in range(20000)))], out
    pids = [int(p) for p in re.search(r"map pids ([\d ]+)", out).group(1).split()]
    driver = int(re.search(r"driver pid (\d+)", out).group(1))
    assert len(pids) == 2 and driver not in pids, out
    # The instances said the same from their processes.
    assert sorted(int(p) for p in re.findall(r"map \d in pid (\d+)", out)) == pids, out
    assert not os.path.exists(state_dir_of(out)), "the local cluster's directory was left behind"
    for pid in pids:
        wait_for(lambda: not alive(pid), f"task process {pid} to end")


def test_a_failure_in_a_task_process_raises_and_tears_the_cluster_down(job):
    script, env = job
    run = subprocess.run([sys.executable, str(script), "1000", "7"], env=env,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode != 0
    assert "boom at 7" in run.stderr, run.stderr
    assert "JobFailedError" in run.stderr, run.stderr
    assert not os.path.exists(state_dir_of(run.stdout))


def test_ctrl_c_stops_the_job_and_its_processes(job):
    script, env = job
    process = subprocess.Popen([sys.executable, str(script), "endless", "-1"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = ""
        while len(re.findall(r"map \d in pid \d+", out)) < 2:
            line = process.stdout.readline()
            assert line, f"the job ended before both map instances started:\n{out}"
            out += line
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    assert "KeyboardInterrupt" in err, err
    assert not os.path.exists(state_dir_of(out))
    for pid in {int(p) for p in re.findall(r"map \d in pid (\d+)", out)}:
        wait_for(lambda: not alive(pid), f"task process {pid} to end after Ctrl-C")


@pytest.mark.parametrize("value", [0, 65, "2", 1.5, True])
def test_a_bad_process_count_is_refused_naming_the_setting(value):
    with pytest.raises(ValueError, match=r"config\['processes'\] must be a whole number"):
        LocalEnvironment("bad", config={"processes": value})
    with pytest.raises(ValueError, match=r"config\['processes_per_node'\] must be a whole"):
        RemoteEnvironment("bad", config={"processes_per_node": value})


def test_processes_need_a_script_file(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["-c"])
    with pytest.raises(RuntimeError, match="runs no script file"):
        LocalEnvironment("interactive", config={"processes": 2})
