"""Function base classes, as in SAGE: subclass one and implement execute().

An operator constructs one instance of the class per parallel instance, with
the arguments given next to it (``stream.map(Scale, 10)`` calls ``Scale(10)``
in every instance), sets ``self.ctx`` to the instance's RuntimeContext and
calls ``open(ctx)`` before the first record and ``close()`` after the last.
"""

import logging


class BaseFunction:
    """The base of every function class: ``ctx``, ``logger``, ``open``, ``close``."""

    def __init__(self, *args, **kwargs):
        self.ctx = None
        self.logger = logging.getLogger(type(self).__name__)

    @property
    def name(self):
        """The operator instance's name, e.g. ``DistMapper[2/4]``, once open."""
        return self.ctx.instance_name if self.ctx is not None else type(self).__name__

    def open(self, ctx):
        """Called once before the first record, with the RuntimeContext."""

    def close(self):
        """Called once after the last record."""

    def execute(self, *args):
        raise NotImplementedError(f"{type(self).__name__} must implement execute()")


class MapFunction(BaseFunction):
    """execute(data) returns the output record; returning None drops the record."""


class FilterFunction(BaseFunction):
    """execute(data) returns whether the record passes."""


class FlatMapFunction(BaseFunction):
    """execute(data) returns an iterable of output records (or None for none)."""


class SinkFunction(BaseFunction):
    """execute(data) consumes the record; what it returns is ignored."""


class KeyByFunction(BaseFunction):
    """execute(data) returns the record's key: int, str, bytes or a tuple of those."""


class BatchFunction(BaseFunction):
    """execute() returns the next record, or None once the batch is done."""


class SourceFunction(BaseFunction):
    """execute() returns the next record, None when it has none right now (it is
    called again), or a StopSignal to end the stream."""


class BaseCoMapFunction(BaseFunction):
    """For ``connect(...).comap(F)``: map0(data) for records of the first stream, map1(data)
    for the second, and so on; returning None drops the record."""

    def map0(self, data):
        raise NotImplementedError(f"{type(self).__name__} must implement map0()")

    def map1(self, data):
        raise NotImplementedError(f"{type(self).__name__} must implement map1()")


class BaseJoinFunction(BaseFunction):
    """For ``keyed.connect(other_keyed).join(F)``: execute(payload, key, tag) for every record,
    tag 0 for the first stream and 1 for the second, returns a list of join results (empty or
    None: none). It keeps what it must remember, e.g. in its members or keyed state."""

    is_join = True

    def execute(self, payload, key, tag):
        raise NotImplementedError(f"{type(self).__name__} must implement execute(payload, key, tag)")


class StopSignal:
    """Returned by a SourceFunction's execute() (the class or an instance) to end its stream."""

    def __init__(self, name=""):
        self.name = name

    def __repr__(self):
        return f"StopSignal({self.name!r})"
