"""The function base classes of SAGE's API, re-exported as SAGE does."""

from sage.common.core.functions import (  # noqa: F401
    BaseCoMapFunction,
    BaseFunction,
    BaseJoinFunction,
    BatchFunction,
    FilterFunction,
    FlatMapFunction,
    KeyByFunction,
    MapFunction,
    SinkFunction,
    SourceFunction,
    StopSignal,
)

__all__ = [
    "BaseCoMapFunction",
    "BaseFunction",
    "BaseJoinFunction",
    "BatchFunction",
    "FilterFunction",
    "FlatMapFunction",
    "KeyByFunction",
    "MapFunction",
    "SinkFunction",
    "SourceFunction",
    "StopSignal",
]
