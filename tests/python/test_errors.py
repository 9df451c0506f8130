"""Failures of Python functions fail the job with their traceback, the operator and the instance;
records that must be pickled and cannot be get a clear error."""

import pickle
import threading

import pytest

import sage
from sage import _native
from sage.common.core import MapFunction, SinkFunction
from sage.kernel.api.local_environment import LocalEnvironment


class Fragile(MapFunction):
    def execute(self, data):
        if data == 7:
            raise ValueError(f"cannot take {data}")
        return data


def test_exception_fails_the_job_with_traceback_operator_and_instance():
    env = LocalEnvironment("fragile")
    env.from_collection(list(range(20))).map(Fragile, name="Fragile", parallelism=2).sink(
        lambda x: None
    )
    with pytest.raises(sage.JobFailedError) as failure:
        env.execute()
    message = str(failure.value)
    assert "job 'fragile'" in message
    assert "operator 'Fragile' instance" in message and "/2 on node" in message
    assert "Traceback (most recent call last)" in message
    assert 'raise ValueError(f"cannot take {data}")' in message
    assert "ValueError: cannot take 7" in message
    assert isinstance(failure.value, RuntimeError)  # SageError derives from RuntimeError


def test_exceptions_in_open_sources_and_lambdas_fail_the_job():
    class BadOpen(MapFunction):
        def open(self, ctx):
            raise KeyError("no config")

        def execute(self, data):
            return data

    env = LocalEnvironment("bad_open")
    env.from_collection([1]).map(BadOpen).sink(lambda x: None)
    with pytest.raises(sage.JobFailedError, match="KeyError: 'no config'"):
        env.execute()

    def broken_source():
        return 1 / 0

    env = LocalEnvironment("bad_source")
    env.from_source(broken_source).sink(lambda x: None)
    with pytest.raises(sage.JobFailedError, match="ZeroDivisionError"):
        env.execute()

    env = LocalEnvironment("bad_filter")
    env.from_collection(["a"]).filter(lambda s: s.missing).sink(lambda x: None)
    with pytest.raises(sage.JobFailedError, match="AttributeError: 'str' object has no attribute"):
        env.execute()


class FailingSink(SinkFunction):
    def execute(self, data):
        if data == 5000:
            raise RuntimeError("sink gives up")


def test_a_failing_sink_downstream_stops_an_endless_source():
    counter = iter(range(10**12))

    env = LocalEnvironment("endless_failure")
    env.from_source(lambda: next(counter)).map(lambda x: x, parallelism=2).sink(FailingSink)
    with pytest.raises(sage.JobFailedError, match="RuntimeError: sink gives up"):
        env.execute()


def test_batches_round_trip_through_pickle_protocol_5():
    records = [1, "two", b"three", (4, [5.0]), {"six": {7}}, None]
    data = _native.encode_batch(records)
    assert data[:2] == b"\x80\x05"  # protocol 5
    assert pickle.loads(data) == records
    assert _native.decode_batch(data) == records


def test_a_record_that_cannot_be_pickled_gets_a_clear_error():
    with pytest.raises(sage.PythonError) as failure:
        _native.encode_batch([1, "fine", threading.Lock()])
    message = str(failure.value)
    assert "a record of type '_thread.lock' cannot be pickled" in message
    assert "protocol 5" in message and "__reduce__" in message


def test_bytes_that_are_not_a_batch_are_refused():
    with pytest.raises(sage.SerializationError, match="cannot be unpickled"):
        _native.decode_batch(b"not a pickle")
    with pytest.raises(sage.SerializationError, match="not a list"):
        _native.decode_batch(pickle.dumps({"a": 1}, protocol=5))
