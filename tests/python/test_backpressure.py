"""Nothing is lost when a slow sink holds the pipeline back: producers block (backpressure),
they never drop, and the GIL is not held while they wait; a source that waits for its data
does not hold its records back; the data plane's settings are checked."""

import re
import threading

import pytest

import sage
from sage.common.core import SinkFunction, SourceFunction, StopSignal
from sage.kernel.api.local_environment import LocalEnvironment

N = 100_000


class SlowSink(SinkFunction):
    received = []
    lock = threading.Lock()

    def execute(self, data):
        total = 0
        for i in range(100):  # about 5 us of work per record: far slower than the source
            total += i
        with SlowSink.lock:
            SlowSink.received.append(data)


def test_slow_sink_receives_every_record_and_producers_block():
    SlowSink.received = []
    env = LocalEnvironment("backpressure")
    (
        env.from_collection(list(range(N)))
        .map(lambda x: (x, str(x)), parallelism=2)
        .sink(SlowSink, parallelism=1)
    )
    result = env.execute()
    assert len(SlowSink.received) == N
    assert sorted(x for x, _ in SlowSink.received) == list(range(N))
    assert all(s == str(x) for x, s in SlowSink.received)
    # Far more records than the queues hold (16 batches of 1024 per instance): the
    # producers had to wait for room.
    blocked = sum(i.blocked_seconds for i in result.instances if i.operator_name != "SlowSink")
    assert blocked > 0, result.statistics_table


class WaitingSource(SourceFunction):
    """Gives record n only once the sink has seen record n - 1, as a source waiting for replies
    to what it sent would; gives up (and ends) when that takes longer than a deadline."""

    seen = 0
    stuck = False
    changed = threading.Condition()

    def __init__(self):
        super().__init__()
        self.next = 0

    def execute(self):
        with WaitingSource.changed:
            if self.next == 100:
                return StopSignal("done")
            # The deadline only ends a failing run: a record held in a batch is never seen.
            if not WaitingSource.changed.wait_for(lambda: WaitingSource.seen == self.next, 5):
                WaitingSource.stuck = True
                return StopSignal("stuck")
            self.next += 1
            return self.next - 1


class SeenSink(SinkFunction):
    def execute(self, data):
        with WaitingSource.changed:
            WaitingSource.seen += 1
            WaitingSource.changed.notify_all()


def test_a_source_that_waits_for_its_data_sends_each_record_within_the_linger():
    WaitingSource.seen, WaitingSource.stuck = 0, False
    env = LocalEnvironment("waiting-source", config={"linger": 0})
    env.from_source(WaitingSource).rebalance().sink(SeenSink)
    env.execute()
    assert not WaitingSource.stuck, f"record {WaitingSource.seen} waited for the next one"
    assert WaitingSource.seen == 100


def test_data_plane_settings_are_checked():
    for config, message in [
        ({"batch_size": 0}, "config['batch_size'] is int 0; it must be a whole number from 1 up"),
        ({"channel_capacity": "8"}, "config['channel_capacity'] must be a whole number, got str"),
        ({"linger": -0.5}, "config['linger'] must be a number of seconds (0 or more), got float"),
        ({"checkpoint_interval": "soon"}, "config['checkpoint_interval'] must be a number of"),
        ({"task_scheduling": "fast"},
         "config task_scheduling: 'fast'; use \"throughput\" or \"normal\""),
    ]:
        with pytest.raises(sage.InvalidPlanError, match=re.escape(message)):
            LocalEnvironment("settings", config=config)
    env = LocalEnvironment("parallelism")
    with pytest.raises(sage.InvalidPlanError, match="parallelism must be a whole number of "
                       "instances \\(1 or more\\), got str '4'"):
        env.from_batch([1]).map(lambda x: x, parallelism="4")
