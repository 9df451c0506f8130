"""The program is the job, in Python: RemoteEnvironment uploads the script's directory as a
bundle (by content hash, capped) and every node runs the script unpacked from it; `sage job
submit script.py`; and the small fixes that came with it (a KeyByFunction's open/close, an
idle SourceFunction that costs no core, Ctrl-C during execute())."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from sage.common.core import KeyByFunction, SinkFunction, SourceFunction, StopSignal
from sage.kernel.api.local_environment import LocalEnvironment


def sage_cli():
    cli = os.environ.get("SAGE_CLI")
    if not cli:
        pytest.fail("SAGE_CLI is not set: run the Python tests through ctest (ctest --test-dir "
                    "build -R python), which points it at build/bin/sage")
    return cli


class Cluster:
    """A head and worker-1 in `state`, started from `daemon_cwd`, a directory that is neither
    the state directory nor the job's."""

    def __init__(self, tmp_path):
        self.state = tmp_path / "state"
        self.daemon_cwd = tmp_path / "daemons"
        self.state.mkdir()
        self.daemon_cwd.mkdir()
        self.env = dict(os.environ, SAGE_STATE_DIR=str(self.state))
        for variable in ("SAGE_ADDRESS", "SAGE_TOKEN", "PYTHONHASHSEED", "SAGE_MAX_BUNDLE_SIZE"):
            self.env.pop(variable, None)

    def sage(self, *args, timeout=60):
        return subprocess.run([sage_cli(), *args], env=self.env, cwd=self.daemon_cwd,
                              capture_output=True, text=True, timeout=timeout)

    def start(self):
        started = self.sage("cluster", "start", "--head", "--port", "0", "--jobmanager-port", "0",
                            "--dashboard-port", "0")
        assert started.returncode == 0, started.stderr
        head = json.loads((self.state / "head.json").read_text())
        worker = self.sage("cluster", "start", "--worker", f"--head-address={head['cluster']}",
                           "--node-id", "worker-1")
        assert worker.returncode == 0, worker.stderr

    def stored_programs(self):
        """name -> inode of every program and bundle the head and workers store."""
        programs = self.state / "programs"
        return {p.name: p.stat().st_ino for p in programs.iterdir() if len(p.name) == 64}


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.sage("cluster", "stop")


HELPER = """
MARK = "helper-{mark}"
"""

# Each record says where its task process ran the script from: the sibling module's file,
# the working directory and PYTHONHASHSEED.
BUNDLED_JOB = """
import os
import sys
import helper
from sage.kernel.api.remote_environment import RemoteEnvironment, is_task_process

def where(x):
    return (f"RAN {x} {helper.MARK} FILE {os.path.realpath(helper.__file__)} "
            f"CWD {os.getcwd()} SEED {os.environ.get('PYTHONHASHSEED')}")

env = RemoteEnvironment("bundled")
env.from_collection(list(range(8))).map(where, parallelism=2).print(parallelism=2)
if not is_task_process():
    print("SUBMITTER SEED", os.environ.get("PYTHONHASHSEED"), flush=True)
env.execute()
"""


def make_job(tmp_path, mark="one"):
    job = tmp_path / "job"
    job.mkdir(exist_ok=True)
    (job / "bundled_job.py").write_text(BUNDLED_JOB)
    (job / "helper.py").write_text(HELPER.format(mark=mark))
    (job / "__pycache__").mkdir(exist_ok=True)
    (job / "__pycache__" / "junk.pyc").write_bytes(os.urandom(64))  # skipped: no new hash
    return job


def ran_lines(out):
    return re.findall(r"RAN (\d+) (\S+) FILE (\S+) CWD (\S+) SEED (\S+)", out)


def check_ran_from_a_bundle(cluster, out, mark):
    lines = ran_lines(out)
    assert sorted(int(x) for x, *_ in lines) == list(range(8)), out
    bundles = cluster.state / "bundles"
    for _, seen_mark, file, cwd, seed in lines:
        assert seen_mark == f"helper-{mark}"
        # The sibling module came from the bundle unpacked under its hash, and the task
        # process ran there: never from the script's own directory.
        directory = pathlib.Path(cwd)
        assert directory.parent == bundles.resolve() and re.fullmatch("[0-9a-f]{64}", directory.name)
        assert pathlib.Path(file) == directory / "helper.py"
        assert not (directory / "__pycache__" / "junk.pyc").exists()
        assert seed == "0"
    return pathlib.Path(lines[0][3]).name


def test_the_script_and_its_directory_run_from_the_bundle(cluster, tmp_path):
    job = make_job(tmp_path)
    run = subprocess.run([sys.executable, str(job / "bundled_job.py")], env=cluster.env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    bundle = check_ran_from_a_bundle(cluster, run.stdout, "one")
    assert bundle in cluster.stored_programs()

    # The same directory again: the same bundle, nothing uploaded (each stored program keeps
    # its file, which an upload would have replaced).
    before = cluster.stored_programs()
    again = subprocess.run([sys.executable, str(job / "bundled_job.py")], env=cluster.env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    assert check_ran_from_a_bundle(cluster, again.stdout, "one") == bundle
    assert cluster.stored_programs() == before

    # A changed sibling is a new bundle, and the job sees the change.
    (job / "helper.py").write_text(HELPER.format(mark="two"))
    changed = subprocess.run([sys.executable, str(job / "bundled_job.py")], env=cluster.env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert changed.returncode == 0, changed.stderr
    assert check_ran_from_a_bundle(cluster, changed.stdout, "two") != bundle


def test_the_script_directory_is_not_needed_once_submitted(cluster, tmp_path):
    # The submitter moves its own directory away right after submit(): task processes that
    # looked for the script or its sibling at the submitter's path would fail.
    job = make_job(tmp_path, mark="moved")
    script = (job / "bundled_job.py").read_text().replace(
        "env.execute()\n",
        "env.submit()\n"
        "if not is_task_process():\n"
        "    os.rename(os.path.dirname(os.path.abspath(__file__)), os.environ['MOVED_TO'])\n"
        "env.wait()\n")
    (job / "bundled_job.py").write_text(script)
    env = dict(cluster.env, MOVED_TO=str(tmp_path / "gone"))
    run = subprocess.run([sys.executable, str(job / "bundled_job.py")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert not job.exists()
    check_ran_from_a_bundle(cluster, run.stdout, "moved")


def test_sage_job_submit_runs_a_python_script(cluster, tmp_path):
    job = make_job(tmp_path, mark="cli")
    run = cluster.sage("job", "submit", str(job / "bundled_job.py"), timeout=180)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    check_ran_from_a_bundle(cluster, run.stdout, "cli")
    assert "SUBMITTER SEED 0" in run.stdout  # the same seed as the task processes

    # The interpreter named first keeps working.
    explicit = cluster.sage("job", "submit", sys.executable, str(job / "bundled_job.py"),
                            timeout=180)
    assert explicit.returncode == 0, explicit.stderr
    check_ran_from_a_bundle(cluster, explicit.stdout, "cli")


def test_a_directory_over_the_bundle_limit_is_refused(tmp_path):
    job = make_job(tmp_path)
    (job / "data.bin").write_bytes(b"x" * 4096)
    env = dict(os.environ, SAGE_MAX_BUNDLE_SIZE="2KiB", SAGE_STATE_DIR=str(tmp_path / "state"))
    run = subprocess.run([sys.executable, str(job / "bundled_job.py")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    error = run.stderr.strip().splitlines()[-1]
    assert f"the script's directory {job.resolve()} holds more than a job bundle takes" in error
    assert "put the script in a directory of its own" in error
    assert 'config={"max_bundle_size"' in error and "$SAGE_MAX_BUNDLE_SIZE" in error
    assert "RAN" not in run.stdout

    env["SAGE_MAX_BUNDLE_SIZE"] = "a lot"
    bad = subprocess.run([sys.executable, str(job / "bundled_job.py")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert "$SAGE_MAX_BUNDLE_SIZE is 'a lot'; give a positive size" in bad.stderr


def test_a_plan_that_differs_gives_the_python_advice(cluster, tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    (job / "differ.py").write_text(
        "from sage.kernel.api.remote_environment import RemoteEnvironment, is_task_process\n"
        "env = RemoteEnvironment('differ')\n"
        "env.from_collection([1, 2]).map(lambda x: x, parallelism=1 if is_task_process() else 2)"
        ".print()\n"
        "env.execute()\n")
    run = subprocess.run([sys.executable, str(job / "differ.py")], env=cluster.env,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode != 0
    assert "this process built a different dataflow" in run.stderr, run.stderr
    assert "PYTHONHASHSEED" in run.stderr and "is_task_process()" in run.stderr
    assert "sage::is_task_process" not in run.stderr


# ---- KeyByFunction open/close, an idle SourceFunction, Ctrl-C --------------------------

class Lifecycle:
    lock = threading.Lock()
    events = []


class UserKey(KeyByFunction):
    def open(self, ctx):
        with Lifecycle.lock:
            Lifecycle.events.append(("open", ctx.name, ctx.parallel_index))
        self.opened = True

    def execute(self, data):
        assert self.opened, "execute() before open()"
        return data[0]

    def close(self):
        with Lifecycle.lock:
            Lifecycle.events.append(("close",))


class KeyedSink(SinkFunction):
    def execute(self, data):
        with Lifecycle.lock:
            Lifecycle.events.append(("record", data[0], self.ctx.current_key))


def test_a_key_by_function_is_opened_and_closed():
    Lifecycle.events = []
    env = LocalEnvironment("keyed_lifecycle")
    records = [(f"user-{i % 5}", i) for i in range(100)]
    env.from_collection(records, parallelism=2).keyby(UserKey).sink(KeyedSink, parallelism=3)
    env.execute()
    opens = [e for e in Lifecycle.events if e[0] == "open"]
    closes = [e for e in Lifecycle.events if e[0] == "close"]
    seen = [e for e in Lifecycle.events if e[0] == "record"]
    # One key function per producing instance (routing) and per keyed instance (current_key).
    assert sorted((name, i) for _, name, i in opens) == sorted(
        [("collection", 0), ("collection", 1)] + [("KeyedSink", i) for i in range(3)])
    assert len(closes) == len(opens)
    assert len(seen) == 100 and all(key == current for _, key, current in seen)


class IdleThenOne(SourceFunction):
    """Nothing for a second (None), then one record, then the end; counts its calls."""

    calls = 0

    def open(self, ctx):
        self.start = time.monotonic()
        self.sent = False

    def execute(self):
        IdleThenOne.calls += 1
        if time.monotonic() - self.start < 1.0:
            return None
        if not self.sent:
            self.sent = True
            return "late"
        return StopSignal("done")


def test_an_idle_source_is_polled_with_a_bounded_back_off():
    IdleThenOne.calls = 0
    received = []
    env = LocalEnvironment("idle_source")
    env.from_source(IdleThenOne).sink(received.append)
    started = time.monotonic()
    env.execute()
    assert received == ["late"]
    assert time.monotonic() - started < 10
    # Polling without a pause calls it hundreds of thousands of times a second; the back off
    # (50 us doubling to 10 ms) about 110 times in that second.
    assert IdleThenOne.calls < 1000, IdleThenOne.calls


ENDLESS_JOB = """
import sys
from sage.common.core import SourceFunction, SinkFunction
from sage.kernel.api.local_environment import LocalEnvironment

class Endless(SourceFunction):
    def __init__(self):
        self.n = 0
    def execute(self):
        self.n += 1
        return self.n

class Announce(SinkFunction):
    def open(self, ctx):
        self.said = False
    def execute(self, data):
        if not self.said:
            self.said = True
            print("RUNNING", flush=True)

env = LocalEnvironment("endless")
env.from_source(Endless).map(lambda x: x * 2).sink(Announce)
env.execute()
"""


def test_ctrl_c_interrupts_execute(tmp_path):
    script = tmp_path / "endless.py"
    script.write_text(ENDLESS_JOB)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        running = threading.Event()
        threading.Thread(target=lambda: process.stdout.readline() == "RUNNING\n" and running.set(),
                         daemon=True).start()
        assert running.wait(60), "the job did not start within 60 s"
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("execute() was not interrupted within 30 s of SIGINT")
        assert process.returncode != 0
        assert "KeyboardInterrupt" in stderr, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
