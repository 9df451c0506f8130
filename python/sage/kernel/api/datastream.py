"""DataStream: a stream of Python records in the dataflow being built.

Every transformation takes a function as SAGE does: a function class (the
positional and keyword arguments after it go to its constructor, once per
parallel instance), an instance of one (copied per parallel instance), a
lambda or a plain function; and the keyword-only options ``name``,
``parallelism`` and ``resources`` (a dict: num_cpus, memory, num_gpus).
Nothing runs until the environment submits the job.
"""

import copy
import sys

from sage import _native
from sage.common.core.functions import BaseFunction
from sage.kernel.api.runtime import RuntimeContext


def _bind(instance, call=None):
    """(call, open, close, save_state, restore_state, notify_checkpoint_complete) of a function
    instance, as the engine wants them (None for a method it lacks); ``call`` is its execute()
    unless given. With checkpoints on, save_state() returns the function's own state (pickled
    into the checkpoint) and restore_state(state) gets it back after a restart."""
    user_open = getattr(instance, "open", None)

    def open_(handle):
        ctx = RuntimeContext(handle)
        try:
            instance.ctx = ctx
        except AttributeError:
            pass
        if user_open is not None:
            user_open(ctx)

    call = instance.execute if call is None else call
    methods = ("close", "save_state", "restore_state", "notify_checkpoint_complete")
    return (call, open_) + tuple(getattr(instance, m, None) for m in methods)


def function_factory(function, args, kwargs, what):
    """A factory the engine calls once per parallel instance, and the operator's default name."""
    if isinstance(function, type):
        if not callable(getattr(function, "execute", None)):
            raise TypeError(
                f"{what}: class {function.__name__} has no execute() method; derive it from a "
                f"function class of sage.common.core and implement execute()"
            )

        def make():
            return _bind(function(*args, **kwargs))

        return make, function.__name__
    if args or kwargs:
        raise TypeError(
            f"{what}: the arguments {args or ''}{kwargs or ''} are for a function class's "
            f"constructor; pass the class itself, not {function!r}"
        )
    if isinstance(function, BaseFunction) or (
        not callable(function) and callable(getattr(function, "execute", None))
    ):
        return (lambda: _bind(copy.deepcopy(function))), type(function).__name__
    if callable(function):
        return (lambda: (function, None, None, None, None, None)), ""
    raise TypeError(
        f"{what}: expected a function class, a function object with execute(), a lambda or a "
        f"function, got {type(function).__name__}"
    )


def comap_factory(function, args, kwargs, inputs):
    """The factory of a comap over ``inputs`` streams: its call is (map0, ..., map<inputs-1>)."""
    if not isinstance(function, type):
        raise TypeError(
            f"comap: expected a class with map0() to map{inputs - 1}() (a BaseCoMapFunction), "
            f"got {type(function).__name__}"
        )
    missing = [f"map{i}" for i in range(inputs) if not callable(getattr(function, f"map{i}", None))]
    if missing:
        raise TypeError(
            f"comap: {function.__name__} lacks {', '.join(missing)}; over {inputs} streams it "
            f"needs map0() to map{inputs - 1}()"
        )

    def make():
        instance = function(*args, **kwargs)
        return _bind(instance, tuple(getattr(instance, f"map{i}") for i in range(inputs)))

    return make, function.__name__


def join_factory(function, args, kwargs):
    """The factory of SAGE's join: execute(payload, key, tag) for records of stream ``tag``
    (0: the first, 1: the second), returning a list of results; the key is the record's. The
    function is a class, an object or a function of (payload, key, tag)."""
    make_function, name = function_factory(function, args, kwargs, "join")

    def make():
        bound = make_function()
        execute = bound[0]
        handles = []

        def join_open(handle):
            handles.append(handle)
            if bound[1] is not None:
                bound[1](handle)

        def left(payload):
            return execute(payload, handles[0].current_key, 0)

        def right(payload):
            return execute(payload, handles[0].current_key, 1)

        return ((left, right), join_open) + bound[2:]

    return make, name or "join"


def partitioner_factory(partitioner):
    """A function factory (see _bind) whose call (record, num_partitions) returns the index
    of partition_custom."""
    if isinstance(partitioner, type):
        partitioner = partitioner()
    if callable(getattr(partitioner, "partition", None)):
        def make():
            instance = copy.deepcopy(partitioner)
            return _bind(instance, instance.partition)

        return make
    if callable(partitioner):
        return lambda: (partitioner, None, None, None, None, None)
    raise TypeError(
        f"partition_custom: expected a Partitioner (partition(record, num_partitions)) or a "
        f"function (record, num_partitions), got {type(partitioner).__name__}"
    )


def key_factory(function, args, kwargs):
    """A factory of the key function of keyby as (call, open, close): a KeyByFunction gets
    open(ctx) before its first key and close() at the end of the stream."""
    make, _ = function_factory(function, args, kwargs, "keyby")
    return make


class _PrintSink(BaseFunction):
    """SAGE's print(): one line per record, after the prefix and separator."""

    def __init__(self, prefix, separator):
        super().__init__()
        self.head = f"{prefix}{separator}" if prefix else ""

    def execute(self, data):
        # One write per line: print() writes the text and the newline apart, and another
        # thread's line could come between them.
        sys.stdout.write(f"{self.head}{data}\n")
        sys.stdout.flush()


class DataStream:
    """A stream of records; each transformation returns the stream of its output."""

    def __init__(self, environment, native, keyed=False):
        self._environment = environment
        self._native = native
        self._keyed = keyed  # the output of keyby: the next operator sees each record's key

    def _transform(self, kind, function, args, kwargs, options, what):
        make, default_name = function_factory(function, args, kwargs, what)
        native = self._native.transform(
            kind,
            make,
            options.get("name") or default_name,
            options.get("parallelism"),
            options.get("resources"),
        )
        return DataStream(self._environment, native)

    def map(self, function, *args, name=None, parallelism=None, resources=None, **kwargs):
        """One output per record: ``execute(data)``'s result; None drops the record."""
        if callable(getattr(function, "sage_native_operator", None)):  # runs in C++ (rag.py)
            made = function(*args, **kwargs) if isinstance(function, type) else function
            native = self._native.native(made.sage_native_operator(), name or "", parallelism,
                                         resources)
            return DataStream(self._environment, native)
        options = dict(name=name, parallelism=parallelism, resources=resources)
        return self._transform(_native.TransformKind.MAP, function, args, kwargs, options, "map")

    def filter(self, function, *args, name=None, parallelism=None, resources=None, **kwargs):
        """The records for which ``execute(data)`` is true."""
        options = dict(name=name, parallelism=parallelism, resources=resources)
        return self._transform(
            _native.TransformKind.FILTER, function, args, kwargs, options, "filter"
        )

    def flatmap(self, function, *args, name=None, parallelism=None, resources=None, **kwargs):
        """Every element of the iterable ``execute(data)`` returns (None: none)."""
        options = dict(name=name, parallelism=parallelism, resources=resources)
        return self._transform(
            _native.TransformKind.FLAT_MAP, function, args, kwargs, options, "flatmap"
        )

    flat_map = flatmap

    def sink(self, function, *args, name=None, parallelism=None, resources=None, **kwargs):
        """Consumes every record with ``execute(data)``. Returns this stream, as SAGE's does."""
        options = dict(name=name, parallelism=parallelism, resources=resources)
        self._transform(_native.TransformKind.SINK, function, args, kwargs, options, "sink")
        return self

    def print(self, prefix="", separator=" | ", colored=True, *, name=None, parallelism=None):
        """Prints every record on a line (after ``prefix`` and ``separator`` when a prefix is
        given). ``colored`` is accepted for SAGE's signature; the output is plain."""
        return self.sink(
            _PrintSink, prefix, separator, name=name or "print", parallelism=parallelism
        )

    def keyby(self, function, strategy="hash", *args, **kwargs):
        """Records with equal keys reach the same instance of the next operator, in every
        process: the key (int, str, bytes or a tuple of those) is hashed with sage's stable
        hash, never Python's hash()."""
        if strategy != "hash":
            raise ValueError(
                f"keyby: strategy {strategy!r} is not supported; keyby partitions by 'hash' "
                f"(use rebalance() for round robin)"
            )
        native = self._native.key_by(key_factory(function, args, kwargs))
        return DataStream(self._environment, native, keyed=True)

    key_by = keyby

    def rebalance(self):
        """Round robin over the instances of the next operator."""
        return DataStream(self._environment, self._native.rebalance())

    def broadcast(self):
        """Every record to every instance of the next operator (the same object to each, in
        one process)."""
        return DataStream(self._environment, self._native.broadcast())

    def partition_custom(self, partitioner, parallelism=None):
        """The partitioner's ``partition(record, num_partitions)`` (a Partitioner, its class, or
        a function of both) picks the instance of the next operator; ``parallelism`` is that
        operator's parallelism unless it says otherwise."""
        native = self._native.partition_custom(partitioner_factory(partitioner), parallelism)
        return DataStream(self._environment, native)

    def union(self, *others):
        """The records of this stream and of ``others`` as one stream."""
        return DataStream(self._environment, self._native.union([o._native for o in others]))

    def connect(self, other):
        """This stream and ``other`` (a DataStream or ConnectedStreams), for comap."""
        return ConnectedStreams(self._environment, [self]).connect(other)


class ConnectedStreams:
    """Two or more streams, kept apart until comap processes each with its own map<i>. The
    other transformations (map, filter, flatmap, sink, print) see them as one stream."""

    def __init__(self, environment, streams):
        self._environment = environment
        self._streams = list(streams)

    def connect(self, other):
        """These streams and ``other``'s."""
        more = other._streams if isinstance(other, ConnectedStreams) else [other]
        return ConnectedStreams(self._environment, self._streams + more)

    def comap(self, function, *args, name=None, parallelism=None, resources=None, **kwargs):
        """A BaseCoMapFunction class: map<i>(data) for records of the i-th stream (None drops
        the record); the arguments after it go to its constructor."""
        if len(self._streams) < 2:
            raise ValueError("comap needs at least two connected streams")
        make, default_name = comap_factory(function, args, kwargs, len(self._streams))
        native = _native.comap(
            [s._native for s in self._streams], make, name or default_name, parallelism, resources
        )
        return DataStream(self._environment, native)

    def join(self, function, *args, name=None, parallelism=None, resources=None, **kwargs):
        """SAGE's join of two keyed streams: a BaseJoinFunction class (constructed with the
        arguments after it) whose execute(payload, key, tag) gets every record of the first
        (tag 0) and the second (tag 1) stream with its key, and returns a list of results (None:
        none). Records of a key reach one instance; the function keeps what it must remember
        (its own members, or keyed state from its ctx)."""
        if len(self._streams) != 2:
            raise ValueError(f"join needs exactly two connected streams, got {len(self._streams)}")
        if not all(s._keyed for s in self._streams):
            raise ValueError(
                "join needs two keyed streams: keyby(...) each stream before connect(), or call "
                "keyby([key0, key1]) on the connected streams"
            )
        make, default_name = join_factory(function, args, kwargs)
        native = _native.comap(
            [s._native for s in self._streams], make, name or default_name, parallelism,
            resources, _native.TransformKind.FLAT_MAP,
        )
        return DataStream(self._environment, native)

    def keyby(self, key_selector, strategy="hash"):
        """Each stream keyed: by one key function, or a list with one per stream."""
        if isinstance(key_selector, list):
            if len(key_selector) != len(self._streams):
                raise ValueError(
                    f"keyby: {len(key_selector)} key functions for {len(self._streams)} streams"
                )
            selectors = key_selector
        else:
            selectors = [key_selector] * len(self._streams)
        return ConnectedStreams(
            self._environment,
            [s.keyby(k, strategy) for s, k in zip(self._streams, selectors)],
        )

    key_by = keyby

    def _merged(self):
        return self._streams[0].union(*self._streams[1:])

    def map(self, function, *args, **kwargs):
        return self._merged().map(function, *args, **kwargs)

    def filter(self, function, *args, **kwargs):
        return self._merged().filter(function, *args, **kwargs)

    def flatmap(self, function, *args, **kwargs):
        return self._merged().flatmap(function, *args, **kwargs)

    flat_map = flatmap

    def sink(self, function, *args, **kwargs):
        return self._merged().sink(function, *args, **kwargs)

    def print(self, prefix="", separator=" | ", colored=True, **kwargs):
        return self._merged().print(prefix, separator, colored, **kwargs)
