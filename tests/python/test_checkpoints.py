"""Checkpoints of Python jobs: collection and batch sources replay, keyed state (value, list,
map) and functions' own state (save_state / restore_state) go into snapshots as pickles, and
notify_checkpoint_complete is called. On a cluster, a task process that dies once after a
checkpoint is restarted from it (a BatchFunction replaying its record count, a SourceFunction
restoring its saved position): keyed counts are exact and a two-phase sink commits every line
exactly once."""

import subprocess
import sys
import textwrap

import pytest

import sage
from sage.common.core import BatchFunction, MapFunction, SourceFunction
from sage.kernel.api.local_environment import LocalEnvironment

from collect import Collect, lock, out
from test_remote import cluster, sage_cli  # noqa: F401  (the cluster fixture)


class Paced(BatchFunction):
    """Numbers 0..n-1, a little apart so that checkpoints fall in between."""

    def __init__(self, n):
        super().__init__()
        self.n = n
        self.i = 0

    def execute(self):
        if self.i >= self.n:
            return None
        import time

        time.sleep(0.001)
        self.i += 1
        return self.i - 1


class Count(MapFunction):
    """Per key: a count (value state), the values (map state); its own total (save_state)."""

    def __init__(self):
        super().__init__()
        self.total = 0
        self.completed = []

    def open(self, ctx):
        self.count = ctx.value_state("count")
        self.values = ctx.map_state("values")

    def execute(self, n):
        c = (self.count.value() or 0) + 1
        self.count.update(c)
        self.values.put(n, n * n)
        self.total += 1
        return (self.ctx.current_key, c, len(self.values.items()))

    def save_state(self):
        return {"total": self.total}

    def restore_state(self, state):
        self.total = state["total"]

    def notify_checkpoint_complete(self, checkpoint_id):
        self.completed.append(checkpoint_id)

    def close(self):
        with lock:
            out.append(("closed", self.total, len(self.completed) > 0))


def test_a_checkpointed_local_job_takes_checkpoints_and_gives_exact_results():
    env = LocalEnvironment("ckpt", config={"checkpoint_interval": 0.05})
    env.from_batch(Paced, 600).keyby(lambda n: n % 5).map(Count, parallelism=2).sink(Collect)
    result = env.execute()
    assert result.checkpoints_completed >= 1
    closed = [o for o in out if o[0] == "closed"]
    assert sum(t for _, t, _ in closed) == 600
    assert all(notified for _, _, notified in closed if _ > 0)
    finals = {}
    for key, c, distinct in (o for o in out if o[0] != "closed"):
        assert c == distinct  # the map state grows by one value per record
        finals[key] = max(finals.get(key, 0), c)
    assert finals == {k: 120 for k in range(5)}


def test_a_source_that_cannot_replay_is_refused_with_checkpoints():
    env = LocalEnvironment("refused", config={"checkpoint_interval": 0.1})

    class Forever(SourceFunction):
        def execute(self):
            return 1

    env.from_source(Forever).sink(Collect)
    # The advice is Python's: the C++ signatures mean nothing to a script.
    with pytest.raises(sage.SageError, match=r"Forever.* give its class save_state\(self\) .*"
                       r"restore_state\(self, state\)") as refused:
        env.submit(autostop=True)
    assert "sage::Writer" not in str(refused.value)
    env.close()


def test_bad_checkpoint_config_is_refused():
    with pytest.raises(sage.SageError, match="checkpoint_mode"):
        LocalEnvironment("bad", config={"checkpoint_interval": 1, "checkpoint_mode": "sometimes"})


JOB = textwrap.dedent(
    """
    import os, sys, time
    from sage.common.core import BatchFunction, MapFunction, SinkFunction, SourceFunction, StopSignal
    from sage.kernel.api.remote_environment import RemoteEnvironment, is_task_process

    WORK = sys.argv[1]
    N = 3000

    class Paced(BatchFunction):
        def __init__(self):
            super().__init__()
            self.i = 0

        def execute(self):
            if self.i >= N:
                return None
            time.sleep(0.001)
            self.i += 1
            return self.i - 1

    class Numbers(SourceFunction):
        # N..2N-1; replayable through save_state / restore_state.
        def __init__(self):
            super().__init__()
            self.next = N

        def execute(self):
            if self.next >= 2 * N:
                return StopSignal("done")
            time.sleep(0.001)
            self.next += 1
            return self.next - 1

        def save_state(self):
            return self.next

        def restore_state(self, state):
            self.next = state

    class Count(MapFunction):
        def open(self, ctx):
            self.count = ctx.value_state("count")
            self.checkpointed = False

        def notify_checkpoint_complete(self, checkpoint_id):
            self.checkpointed = True

        def execute(self, n):
            if self.checkpointed and n > N // 2 and self.ctx.parallel_index == 0:
                try:  # the first time only: the process dies as kill -9 would
                    os.close(os.open(os.path.join(WORK, "crashed"), os.O_CREAT | os.O_EXCL))
                    os._exit(17)
                except FileExistsError:
                    pass
            c = (self.count.value() or 0) + 1
            self.count.update(c)
            return f"{self.ctx.current_key} {c}"

    class TwoPhaseSink(SinkFunction):
        # Lines wait for the checkpoint that covers them; each staged part is committed once
        # (its name records it), so a part restored after a crash is not committed twice.
        def open(self, ctx):
            self.part = f"part-{ctx.parallel_index}"
            self.pending, self.staged, self.seq = [], [], 0

        def execute(self, line):
            self.pending.append(line)

        def save_state(self):
            self.seq += 1
            self.staged.append((f"{self.part}-{self.seq}", self.pending))
            self.pending = []
            return {"staged": self.staged, "seq": self.seq}

        def restore_state(self, state):
            self.staged, self.seq = state["staged"], state["seq"]

        def notify_checkpoint_complete(self, checkpoint_id):
            for part, lines in self.staged:
                path = os.path.join(WORK, part)
                if not os.path.exists(path):
                    with open(path + ".tmp", "w") as f:
                        f.write("".join(l + "\\n" for l in lines))
                    os.rename(path + ".tmp", path)
            self.staged = []

    config = {"checkpoint_interval": 0.1, "restart_delay": 0.2}
    env = RemoteEnvironment("py-exactly-once", config=config)
    (env.from_batch(Paced).union(env.from_source(Numbers)).keyby(lambda n: n % 7)
        .map(Count, parallelism=2).sink(TwoPhaseSink, parallelism=2))
    env.submit(autostop=True)
    result = env.wait()
    print("RESTARTS", result.restarts, "CHECKPOINTS", result.checkpoints_completed)
    """
)


def test_a_task_process_that_dies_is_restarted_from_the_checkpoint_exactly_once(cluster, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    script = tmp_path / "job.py"
    script.write_text(JOB)
    run = subprocess.run([sys.executable, str(script), str(work)], env=cluster,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert (work / "crashed").exists(), "the task process never crashed"
    assert "RESTARTS 1" in run.stdout, run.stdout
    lines = []
    for part in work.glob("part-*"):
        assert not part.name.endswith(".tmp")
        lines += part.read_text().splitlines()
    # Every key's counts 1..n exactly once: no record lost, none counted twice.
    expected = sorted(f"{k} {c}" for k in range(7) for c in range(1, len(range(k, 6000, 7)) + 1))
    assert sorted(lines) == expected
