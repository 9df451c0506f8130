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


class MapState:
    """Keyed state, one dict per key: ``get(k, default)``, ``put(k, v)``, ``contains(k)``,
    ``remove(k)``, ``keys()``, ``values()``, ``items()``, ``is_empty()``, ``clear()``. The
    dict's own keys are any hashable Python values (they stay inside the instance); it is
    pickled into checkpoints with the rest of the keyed state."""

    def __init__(self, value_state):
        self._state = value_state

    def _map(self, create=False):
        entries = self._state.value()
        if entries is None and create:
            entries = {}
            self._state.update(entries)
        return {} if entries is None else entries

    def get(self, key, default=None):
        return self._map().get(key, default)

    def put(self, key, value):
        self._map(create=True)[key] = value

    def contains(self, key):
        return key in self._map()

    def remove(self, key):
        self._map().pop(key, None)

    def keys(self):
        return list(self._map().keys())

    def values(self):
        return list(self._map().values())

    def items(self):
        return list(self._map().items())

    def is_empty(self):
        return not self._map()

    def clear(self):
        self._state.clear()


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

    def map_state(self, name):
        """Keyed state, one dict per key (a MapState)."""
        return MapState(self._handle.value_state(f"sage.map.{name}"))

    def get_metrics(self):
        """The instance's metrics: ``ctx.get_metrics().record("latency", seconds)``."""
        return self._metrics
