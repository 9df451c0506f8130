"""DataStream: a stream of Python records in the dataflow being built.

Every transformation takes a function as SAGE does: a function class (the
positional and keyword arguments after it go to its constructor, once per
parallel instance), an instance of one (copied per parallel instance), a
lambda or a plain function; and the keyword-only options ``name``,
``parallelism`` and ``resources`` (a dict: num_cpus, memory, num_gpus).
Nothing runs until the environment submits the job.
"""

import copy

from sage import _native
from sage.common.core.functions import BaseFunction
from sage.kernel.api.runtime import RuntimeContext


def _bind(instance):
    """(call, open, close) of a function instance, as the engine wants them."""
    user_open = getattr(instance, "open", None)

    def open_(handle):
        ctx = RuntimeContext(handle)
        try:
            instance.ctx = ctx
        except AttributeError:
            pass
        if user_open is not None:
            user_open(ctx)

    return instance.execute, open_, getattr(instance, "close", None)


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
        return (lambda: (function, None, None)), ""
    raise TypeError(
        f"{what}: expected a function class, a function object with execute(), a lambda or a "
        f"function, got {type(function).__name__}"
    )


def key_factory(function, args, kwargs):
    """A factory of the key function of keyby: the callable returning a record's key."""
    make, _ = function_factory(function, args, kwargs, "keyby")
    return lambda: make()[0]


class _PrintSink(BaseFunction):
    """SAGE's print(): one line per record, after the prefix and separator."""

    def __init__(self, prefix, separator):
        super().__init__()
        self.head = f"{prefix}{separator}" if prefix else ""

    def execute(self, data):
        print(f"{self.head}{data}", flush=True)


class DataStream:
    """A stream of records; each transformation returns the stream of its output."""

    def __init__(self, environment, native):
        self._environment = environment
        self._native = native

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
        return DataStream(self._environment, self._native.key_by(key_factory(function, args, kwargs)))

    key_by = keyby

    def rebalance(self):
        """Round robin over the instances of the next operator."""
        return DataStream(self._environment, self._native.rebalance())
