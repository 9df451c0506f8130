"""SAGE's page examples beyond the reference one, as SAGE writes them, run unchanged with
RemoteEnvironment on a throwaway local cluster (a head and a worker): two branches from one
source, connect + comap, key_by sessions with keyed state, and partition_custom. Every record
reaches its sink exactly once, and where the example routes records, at the instance it names."""

import collections
import json
import re
import subprocess
import sys

from test_remote import cluster, job_script  # noqa: F401  (the cluster fixture)

PAGE_EXAMPLES = """
import json
import sys

from sage.common.core import BaseCoMapFunction, SinkFunction
from sage.kernel.api.partitioner import Partitioner
from sage.kernel.api.remote_environment import RemoteEnvironment


class Show(SinkFunction):
    # One write per line: print() writes the text and its newline apart, so the lines of
    # sink instances running on several threads of a process could interleave.
    def execute(self, data):
        sys.stdout.write("OUT " + json.dumps([self.ctx.parallel_index, data]) + "\\n")


class Tag(BaseCoMapFunction):
    def map0(self, data):
        return f"number:{data}"

    def map1(self, data):
        return f"word:{data}"


class Session(BaseCoMapFunction):
    def open(self, ctx):
        self.events = ctx.value_state("events")

    def bump(self, kind):
        n = (self.events.value() or 0) + 1
        self.events.update(n)
        return [self.ctx.current_key, kind, n]

    def map0(self, login):
        return self.bump("login")

    def map1(self, click):
        return self.bump("click")


class ByParity(Partitioner):
    def partition(self, record, num_partitions):
        return record % num_partitions


example = sys.argv[1]
env = RemoteEnvironment(name=f"page_{example}")
if example == "branches":
    source = env.from_collection(list(range(100)))
    source.map(lambda x: ["a", x], parallelism=2).sink(Show)
    source.map(lambda x: ["b", x * 10], parallelism=3).sink(Show, parallelism=2)
elif example == "comap":
    numbers = env.from_collection([1, 2, 3])
    words = env.from_collection(["x", "y"])
    numbers.connect(words).comap(Tag, parallelism=2).sink(Show)
elif example == "sessions":
    logins = env.from_collection([["u1", "login"], ["u2", "login"], ["u3", "login"]])
    clicks = env.from_collection([[f"u{1 + i % 3}", "click"] for i in range(30)], parallelism=2)
    logins.connect(clicks).keyby(lambda event: event[0]).comap(Session, parallelism=2).sink(Show)
elif example == "partition":
    env.from_collection(list(range(40))).partition_custom(ByParity(), parallelism=4).sink(Show)
env.submit(autostop=True)
"""


def run_example(cluster, tmp_path, example):  # noqa: F811
    script = job_script(tmp_path, "page_examples.py", PAGE_EXAMPLES)
    run = subprocess.run([sys.executable, str(script), example], env=cluster,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    records = [json.loads(line) for line in re.findall(r"OUT (\[.*\])$", run.stdout, re.M)]
    assert records, run.stdout
    return records


def test_two_branches_from_one_source_each_get_every_record(cluster, tmp_path):  # noqa: F811
    records = run_example(cluster, tmp_path, "branches")
    a = sorted(x for _, (tag, x) in records if tag == "a")
    b = sorted(x for _, (tag, x) in records if tag == "b")
    assert a == list(range(100))
    assert b == [x * 10 for x in range(100)]
    assert len(records) == 200


def test_connect_comap_sends_each_stream_to_its_own_map(cluster, tmp_path):  # noqa: F811
    records = run_example(cluster, tmp_path, "comap")
    assert sorted(value for _, value in records) == sorted(
        ["number:1", "number:2", "number:3", "word:x", "word:y"]
    )


def test_key_by_sessions_count_each_users_events_in_one_state(cluster, tmp_path):  # noqa: F811
    records = run_example(cluster, tmp_path, "sessions")
    by_user = collections.defaultdict(list)
    for _, (user, kind, n) in records:
        by_user[user].append(n)
    # Each user's login and ten clicks met one state, whichever process ran it.
    assert {user: sorted(ns) for user, ns in by_user.items()} == {
        f"u{i}": list(range(1, 12)) for i in (1, 2, 3)
    }
    assert len(records) == 33


def test_partition_custom_sends_each_record_to_its_partition(cluster, tmp_path):  # noqa: F811
    records = run_example(cluster, tmp_path, "partition")
    assert sorted(value for _, value in records) == list(range(40))
    for instance, value in records:
        assert instance == value % 4, (instance, value)
