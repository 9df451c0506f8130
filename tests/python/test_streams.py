"""Several streams: connect + comap, union, connected streams seen as one, partition_custom."""

import threading

import pytest

import sage
from sage.common.core import BaseCoMapFunction, SinkFunction
from sage.kernel.api.local_environment import LocalEnvironment
from sage.kernel.api.partitioner import Partitioner

received = []
lock = threading.Lock()


@pytest.fixture(autouse=True)
def fresh():
    received.clear()
    yield


class Collect(SinkFunction):
    def execute(self, data):
        with lock:
            received.append((self.ctx.parallel_index, data))


def values():
    return sorted((v for _, v in received), key=repr)


class Tag(BaseCoMapFunction):
    def __init__(self, prefix):
        super().__init__()
        self.prefix = prefix

    def map0(self, data):
        return f"{self.prefix}0:{data}"

    def map1(self, data):
        return None if data == "drop" else f"{self.prefix}1:{data}"


class Three(BaseCoMapFunction):
    def map0(self, data):
        return ("a", data)

    def map1(self, data):
        return ("b", data)

    def map2(self, data):
        return ("c", data)


def test_connect_comap_sends_each_stream_to_its_own_map():
    env = LocalEnvironment("comap")
    numbers = env.from_collection([1, 2, 3])
    words = env.from_collection(["x", "drop", "y"])
    numbers.connect(words).comap(Tag, "t", parallelism=2).sink(Collect)
    env.execute()
    assert values() == sorted(["t0:1", "t0:2", "t0:3", "t1:x", "t1:y"], key=repr)


def test_comap_over_three_streams_and_keyed_connected_streams():
    env = LocalEnvironment("comap3")
    a = env.from_collection([1, 2])
    b = env.from_collection([3])
    c = env.from_collection([4, 5], parallelism=2)
    a.connect(b).connect(c).keyby(lambda x: x).comap(Three, parallelism=3).sink(Collect)
    env.execute()
    assert values() == sorted([("a", 1), ("a", 2), ("b", 3), ("c", 4), ("c", 5)], key=repr)


def test_comap_checks_its_function():
    env = LocalEnvironment("comap_bad")
    connected = env.from_collection([1]).connect(env.from_collection([2]))
    with pytest.raises(TypeError, match="lacks map1"):

        class OnlyOne:
            def map0(self, data):
                return data

        connected.comap(OnlyOne)
    with pytest.raises(TypeError, match="expected a class"):
        connected.comap(lambda x: x)


def test_union_and_connected_streams_as_one_stream():
    env = LocalEnvironment("union")
    a = env.from_collection([1, 2])
    b = env.from_collection([10, 20], parallelism=2)
    c = env.from_collection([100])
    a.union(b, c).map(lambda x: x + 1, parallelism=2).sink(Collect)
    a.connect(b).map(lambda x: -x).sink(Collect)
    env.execute()
    assert values() == sorted([2, 3, 11, 21, 101, -1, -2, -10, -20], key=repr)


class ByParity(Partitioner):
    def partition(self, record, num_partitions):
        return record % num_partitions


def test_partition_custom_routes_by_the_partitioner():
    env = LocalEnvironment("custom")
    env.from_collection(list(range(40))).partition_custom(ByParity(), parallelism=4).sink(Collect)
    env.from_collection(list(range(40, 44))).partition_custom(
        lambda record, n: 0, parallelism=3
    ).sink(Collect)
    env.execute()
    for instance, value in received:
        if value < 40:
            assert instance == value % 4
        else:
            assert instance == 0
    assert sorted(v for _, v in received) == list(range(44))


def test_partition_custom_out_of_range_fails_the_job():
    env = LocalEnvironment("custom_bad")
    env.from_collection([1, 2]).partition_custom(lambda r, n: n, parallelism=2).sink(Collect)
    with pytest.raises(sage.JobFailedError, match=r"returned index 2 for 2 partitions.*\[0, 2\)"):
        env.execute()
    env = LocalEnvironment("custom_type")
    env.from_collection([1]).partition_custom(lambda r, n: "0", parallelism=2).sink(Collect)
    with pytest.raises(sage.JobFailedError, match="returned a 'str'"):
        env.execute()


def test_partition_custom_parallelism_conflict_is_refused():
    env = LocalEnvironment("custom_conflict")
    stream = env.from_collection([1]).partition_custom(ByParity(), parallelism=4)
    with pytest.raises(sage.InvalidPlanError, match="asks for parallelism 2"):
        stream.sink(Collect, parallelism=2)


def test_broadcast_sends_every_record_to_every_instance():
    env = LocalEnvironment("broadcast")
    env.from_collection(list(range(3000)), parallelism=2).broadcast().sink(Collect, parallelism=3)
    env.execute()
    assert len(received) == 9000
    for instance in range(3):
        assert sorted(v for i, v in received if i == instance) == list(range(3000))
