"""What every environment has: the sources of a dataflow, and running it."""

import atexit
import types
import weakref

from sage import _native
from sage.common.core.functions import BaseFunction, StopSignal
from sage.kernel.api.datastream import DataStream, function_factory

# Environments still open when the interpreter exits are closed first, while
# the job's threads can still take the GIL to finish.
_open_environments = weakref.WeakSet()


@atexit.register
def _close_open_environments():
    for env in list(_open_environments):
        env.close()


MAX_PROCESSES = 64  # sage::kMaxTaskProcessesPerNode


def count_setting(config, key, where):
    """``config[key]``, a number of processes from 1 to 64 (default 1), or a ValueError that
    names it."""
    value = config.get(key, 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PROCESSES:
        raise ValueError(
            f"{where}: config[{key!r}] must be a whole number of processes from 1 to "
            f"{MAX_PROCESSES}, got {value!r}"
        )
    return value


def _result(values):
    """A job result dict from the engine as an object with attributes."""
    result = types.SimpleNamespace(**values)
    result.instances = [types.SimpleNamespace(**i) for i in values["instances"]]
    return result


class BaseEnvironment:
    """A job being built: its sources, then submit() (or execute()) once."""

    def __init__(self, name, config=None, native=None):
        self.name = name
        self.config = dict(config or {})
        self._native = native
        _open_environments.add(self)

    def _source(self, kind, payload, name, parallelism, resources, replayable=True):
        native = self._native.source(
            kind, payload, StopSignal, replayable, name, parallelism, resources
        )
        return DataStream(self, native)

    def from_collection(self, data, *args, name=None, parallelism=None, resources=None, **kwargs):
        """A bounded source over the elements of ``data`` (copied now), or over a BatchFunction
        class constructed with the arguments after it. With parallelism p, instance i emits
        elements i, i+p, ..."""
        if isinstance(data, type) or isinstance(data, BaseFunction):
            return self.from_batch(
                data, *args, name=name, parallelism=parallelism, resources=resources, **kwargs
            )
        if args or kwargs:
            raise TypeError("from_collection: extra arguments are for a function class; got data")
        return self._source(
            _native.SourceKind.COLLECTION, list(data), name or "collection", parallelism, resources
        )

    def from_batch(self, source, *args, name=None, parallelism=None, resources=None, **kwargs):
        """A bounded source: a BatchFunction class (constructed with the arguments after it)
        or object whose execute() returns records until it returns None, or an iterable
        (a list, a range, a generator: read now)."""
        if isinstance(source, type) or isinstance(source, BaseFunction):
            make, default_name = function_factory(source, args, kwargs, "from_batch")
            return self._source(
                _native.SourceKind.BATCH, make, name or default_name, parallelism, resources
            )
        if args or kwargs:
            raise TypeError("from_batch: extra arguments are for a BatchFunction class")
        try:
            values = list(source)
        except TypeError:
            raise TypeError(
                f"from_batch: expected a BatchFunction class or an iterable, got "
                f"{type(source).__name__}"
            ) from None
        return self._source(
            _native.SourceKind.COLLECTION, values, name or "batch", parallelism, resources
        )

    def from_source(self, function, *args, name=None, parallelism=None, resources=None, **kwargs):
        """A source, bounded or not: a SourceFunction class (constructed with the arguments
        after it), object or a function, whose execute() returns the next record, None when
        it has none right now, or a StopSignal to end the stream."""
        make, default_name = function_factory(function, args, kwargs, "from_source")
        # Replayable (checkpoints) when it can save and restore its position.
        replayable = all(
            callable(getattr(function, m, None)) for m in ("save_state", "restore_state")
        )
        return self._source(
            _native.SourceKind.SOURCE, make, name or default_name, parallelism, resources,
            replayable,
        )

    def submit(self, autostop=False):
        """Starts the job and returns its id. With autostop, returns once every bounded source
        is exhausted and every record processed, raising JobFailedError if it failed."""
        return self._native.submit(autostop)

    def wait(self):
        """Waits for the job to end and returns its result (JobFailedError if it failed)."""
        return _result(self._native.wait())

    def execute(self):
        """submit(autostop=True), then the result: state, duration, per-instance statistics."""
        self.submit(autostop=True)
        return self.wait()

    def stop(self):
        """Ends the job: sources stop, records in flight are still processed."""
        self._native.stop()

    def close(self):
        """Stops a job still running, waits for it and frees the environment."""
        _open_environments.discard(self)
        self._native.close()
