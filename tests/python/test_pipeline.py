"""The Python API on a LocalEnvironment: SAGE's reference example and every call of the API."""

import threading

import pytest

import sage
from sage.common.core import (
    BatchFunction,
    FilterFunction,
    FlatMapFunction,
    MapFunction,
    SinkFunction,
    SourceFunction,
    StopSignal,
)
from sage.kernel.api.local_environment import LocalEnvironment


class Collected:
    """What the sinks of one test received, from every engine thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records = []
        self.by_instance = {}

    def add(self, record, instance=None):
        with self.lock:
            self.records.append(record)
            self.by_instance.setdefault(instance, []).append(record)


collected = Collected()


@pytest.fixture(autouse=True)
def fresh_collection():
    global collected
    collected = Collected()
    yield


class CollectSink(SinkFunction):
    def execute(self, data):
        collected.add(data, self.ctx.instance_name)


# SAGE's reference example (SPEC §4), as SAGE's page writes it.
class DistributedProcessor(MapFunction):
    def __init__(self, label, **kwargs):
        super().__init__(**kwargs)
        self.label = label

    def execute(self, data):
        return {"value": data, "mapper": f"{self.label}[{self.ctx.parallel_index}]"}


class MultipleOfThree(FilterFunction):
    def execute(self, data):
        return data["value"] % 3 == 0


def test_reference_example_delivers_exactly_the_ten_multiples():
    env = LocalEnvironment("parallelism_remote_validation")
    (
        env.from_collection(list(range(1, 31)))
        .map(DistributedProcessor, "DistMapper", parallelism=4)
        .filter(MultipleOfThree, parallelism=3)
        .sink(CollectSink, parallelism=2)
    )
    result = env.execute()
    assert sorted(r["value"] for r in collected.records) == list(range(3, 31, 3))
    assert result.state == "FINISHED"
    instances = {}
    for i in result.instances:
        instances.setdefault(i.operator_name, []).append(i)
    assert [len(instances[n]) for n in ("DistributedProcessor", "MultipleOfThree", "CollectSink")] == [4, 3, 2]
    assert sum(i.records_in for i in instances["DistributedProcessor"]) == 30
    assert sum(i.records_in for i in instances["CollectSink"]) == 10
    # Each mapper instance labels what it processed: all four took part.
    env2 = LocalEnvironment("all_mappers")
    env2.from_collection(list(range(1, 31))).map(
        DistributedProcessor, "DistMapper", parallelism=4
    ).sink(CollectSink)
    env2.execute()
    assert {r["mapper"] for r in collected.records if "mapper" in r} >= {
        f"DistMapper[{i}]" for i in range(4)
    }


def test_two_branches_from_one_source_each_get_every_record():
    env = LocalEnvironment("branches")
    source = env.from_collection(list(range(100)))
    source.map(lambda x: ("a", x), parallelism=2).sink(CollectSink)
    source.map(lambda x: ("b", x), parallelism=3).sink(CollectSink, parallelism=2)
    env.execute()
    a = sorted(x for tag, x in collected.records if tag == "a")
    b = sorted(x for tag, x in collected.records if tag == "b")
    assert a == list(range(100))
    assert b == list(range(100))


def test_fan_out_of_one_operator_to_two_chained_sinks_copies_records():
    env = LocalEnvironment("fan_out")
    mapped = env.from_collection([[i] for i in range(50)]).map(lambda x: x + [0])
    mapped.sink(CollectSink)
    mapped.sink(CollectSink)
    env.execute()
    assert sorted(collected.records) == sorted([[i, 0] for i in range(50)] * 2)


class Countdown(BatchFunction):
    def __init__(self, n):
        super().__init__()
        self.n = n

    def execute(self):
        if self.n == 0:
            return None  # ends the batch, as in SAGE
        self.n -= 1
        return self.n


def test_from_batch_function_ends_at_none():
    env = LocalEnvironment("batch")
    env.from_batch(Countdown, 5).sink(CollectSink)
    env.execute()
    assert sorted(collected.records) == [0, 1, 2, 3, 4]


def test_from_batch_over_iterables_and_from_collection_with_parallelism():
    env = LocalEnvironment("iterables")
    env.from_batch(x * x for x in range(10)).sink(CollectSink)
    env.from_batch(range(3), name="small").map(lambda x: -x - 1).sink(CollectSink)
    env.from_collection(list(range(100, 120)), parallelism=3).sink(CollectSink)
    env.execute()
    assert sorted(collected.records) == sorted(
        [x * x for x in range(10)] + [-1, -2, -3] + list(range(100, 120))
    )


class Ticks(SourceFunction):
    """Returns None (nothing right now) every other call, and StopSignal after n records."""

    def __init__(self, n):
        super().__init__()
        self.n = n
        self.calls = 0
        self.sent = 0

    def execute(self):
        self.calls += 1
        if self.sent == self.n:
            return StopSignal("done")
        if self.calls % 2 == 0:
            return None
        self.sent += 1
        return self.sent


def test_from_source_skips_none_and_ends_at_stop_signal():
    env = LocalEnvironment("source")
    env.from_source(Ticks, 20).sink(CollectSink)
    env.execute()
    assert sorted(collected.records) == list(range(1, 21))


def test_map_returning_none_drops_the_record():
    env = LocalEnvironment("drop")
    env.from_collection(list(range(10))).map(lambda x: x if x % 2 else None).sink(CollectSink)
    env.execute()
    assert sorted(collected.records) == [1, 3, 5, 7, 9]


class Words(FlatMapFunction):
    def execute(self, data):
        return data.split() if data else None


def test_flatmap_and_flat_map():
    env = LocalEnvironment("flat")
    env.from_collection(["a b", "", "c d e"]).flatmap(Words).sink(CollectSink)
    env.from_collection([3, 0, 2]).flat_map(lambda n: range(n), parallelism=2).sink(CollectSink)
    env.execute()
    assert sorted(map(str, collected.records)) == sorted(["a", "b", "c", "d", "e", "0", "1", "2", "0", "1"])


def test_flatmap_larger_than_a_batch_is_sent_in_batches():
    env = LocalEnvironment("big_flat")
    env.from_collection([5000, 3000]).flatmap(lambda n: range(n)).sink(CollectSink, parallelism=2)
    env.execute()
    assert len(collected.records) == 8000
    assert sorted(collected.records) == sorted(list(range(5000)) + list(range(3000)))


def test_print_writes_a_line_per_record(capsys):
    env = LocalEnvironment("print")
    env.from_collection([1, 2, 3]).print("out")
    env.from_collection(["x"]).map(str.upper).print()
    env.execute()
    lines = sorted(capsys.readouterr().out.splitlines())
    assert lines == ["X", "out | 1", "out | 2", "out | 3"]


class Scale(MapFunction):
    def __init__(self, factor, offset=0):
        super().__init__()
        self.factor = factor
        self.offset = offset

    def execute(self, data):
        return data * self.factor + self.offset


class Doubler(MapFunction):
    def __init__(self):
        super().__init__()
        self.seen = 0

    def execute(self, data):
        self.seen += 1  # per instance: the object is copied for each
        return (data * 2, self.seen)


def plain_function(x):
    return x + 1000


def test_function_classes_objects_lambdas_and_plain_functions():
    env = LocalEnvironment("functions")
    env.from_collection([1, 2]).map(Scale, 10, offset=1).sink(CollectSink)
    env.from_collection([3]).map(plain_function).sink(CollectSink)
    env.from_collection([5, 6]).map(Doubler(), parallelism=1).sink(CollectSink)
    env.execute()
    assert sorted(map(str, collected.records)) == sorted(
        ["11", "21", "1003", "(10, 1)", "(12, 2)"]
    )


class Lifecycle(MapFunction):
    events = []
    lock = threading.Lock()

    def open(self, ctx):
        with Lifecycle.lock:
            Lifecycle.events.append(("open", ctx.instance_name, ctx.parallelism, self.ctx is ctx))

    def close(self):
        with Lifecycle.lock:
            Lifecycle.events.append(("close", self.ctx.instance_name))

    def execute(self, data):
        self.ctx.get_metrics().record("value", data)
        self.ctx.get_metrics().inc("seen")
        return data


def test_open_close_once_per_instance_and_metrics():
    Lifecycle.events.clear()
    env = LocalEnvironment("lifecycle")
    env.from_collection(list(range(40))).map(Lifecycle, name="life", parallelism=3).sink(CollectSink)
    result = env.execute()
    opens = sorted(e[1] for e in Lifecycle.events if e[0] == "open")
    closes = sorted(e[1] for e in Lifecycle.events if e[0] == "close")
    assert opens == closes == ["life[0/3]", "life[1/3]", "life[2/3]"]
    assert all(e[2] == 3 and e[3] for e in Lifecycle.events if e[0] == "open")
    life = [i for i in result.instances if i.operator_name == "life"]
    assert sum(i.histograms["value"]["count"] for i in life) == 40
    assert sum(i.counters["seen"] for i in life) == 40
    assert max(i.histograms["value"]["max"] for i in life) == 39


def test_rebalance_spreads_over_every_instance():
    env = LocalEnvironment("rebalance")
    env.from_collection(list(range(400))).rebalance().sink(CollectSink, parallelism=4)
    env.execute()
    assert sorted(collected.records) == list(range(400))
    assert len(collected.by_instance) == 4


def test_resources_and_options_are_checked():
    env = LocalEnvironment("options")
    stream = env.from_collection([1])
    stream.map(lambda x: x, resources={"num_cpus": 2, "memory": "1GB"}).sink(CollectSink)
    with pytest.raises(sage.InvalidPlanError, match="unknown field 'cpus'"):
        stream.map(lambda x: x, resources={"cpus": 2})
    with pytest.raises(sage.InvalidPlanError, match="parallelism must be at least 1"):
        stream.map(lambda x: x, parallelism=0)
    with pytest.raises(TypeError, match="constructor"):
        stream.map(lambda x: x, 5)
    with pytest.raises(TypeError, match="no execute"):
        stream.map(int.__class__)
    env.execute()
    assert collected.records == [1]


class Endless(SourceFunction):
    def __init__(self):
        super().__init__()
        self.n = 0

    def execute(self):
        self.n += 1
        return self.n


def test_submit_without_autostop_then_stop():
    seen_enough = threading.Event()

    class Watch(SinkFunction):
        def execute(self, data):
            collected.add(data)
            if len(collected.records) >= 1000:
                seen_enough.set()

    env = LocalEnvironment("endless")
    env.from_source(Endless).sink(Watch)
    job_id = env.submit()
    assert job_id.startswith("job-")
    assert seen_enough.wait(timeout=60), "the endless source's records did not reach the sink"
    env.stop()
    result = env.wait()
    assert result.state == "STOPPED"
    assert len(collected.records) >= 1000
    env.close()
    with pytest.raises(sage.InvalidPlanError, match="closed"):
        env.from_collection([1])


def test_a_stream_cannot_grow_after_submit():
    env = LocalEnvironment("sealed")
    stream = env.from_collection([1])
    stream.sink(CollectSink)
    env.execute()
    with pytest.raises(sage.InvalidPlanError, match="already run"):
        stream.map(lambda x: x)
