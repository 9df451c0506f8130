"""Nothing is lost when a slow sink holds the pipeline back: producers block (backpressure),
they never drop, and the GIL is not held while they wait."""

import threading

from sage.common.core import SinkFunction
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
