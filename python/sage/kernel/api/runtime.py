"""RuntimeContext: what a running operator instance knows about itself.

Given to ``open(ctx)`` of every function (and set as ``self.ctx`` on function
classes). Valid between ``open`` and ``close`` of its instance.
"""


class Metrics:
    """The instance's user metrics, reported with the job's statistics (and, on a
    cluster, on /metrics): histograms, counters and gauges."""

    def __init__(self, handle):
        self._handle = handle

    def record(self, name, value):
        """Adds ``value`` to the histogram ``name``, e.g. record("processing_time", seconds)."""
        self._handle.record_metric(name, float(value))

    def inc(self, name, n=1):
        """Adds ``n`` to the counter ``name``."""
        self._handle.inc_counter(name, int(n))

    def set_gauge(self, name, value):
        """Sets the gauge ``name`` to ``value``."""
        self._handle.set_gauge(name, float(value))


class RuntimeContext:
    """The operator instance's identity and metrics."""

    def __init__(self, handle):
        self._handle = handle
        self._metrics = Metrics(handle)

    @property
    def name(self):
        """The operator's name."""
        return self._handle.name

    @property
    def instance_name(self):
        """``name[index/parallelism]``, as logs and errors name the instance."""
        return self._handle.instance_name

    @property
    def parallel_index(self):
        return self._handle.parallel_index

    @property
    def parallelism(self):
        return self._handle.parallelism

    @property
    def job_id(self):
        return self._handle.job_id

    @property
    def node_id(self):
        return self._handle.node_id

    @property
    def current_key(self):
        """The key of the record being processed, in an operator applied right after keyby."""
        return self._handle.current_key

    def value_state(self, name):
        """Keyed state, one value per key (operators right after keyby): ``value()`` (None when
        unset), ``update(v)``, ``clear()``. Get it in open(); it follows the current key."""
        return self._handle.value_state(name)

    def list_state(self, name):
        """Keyed state, one list per key: ``get()``, ``add(v)``, ``update(values)``, ``clear()``."""
        return self._handle.list_state(name)

    def get_metrics(self):
        """The instance's metrics: ``ctx.get_metrics().record("latency", seconds)``."""
        return self._metrics
