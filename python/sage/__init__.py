"""sage: SAGE's Python API over sage's C++ dataflow engine.

Write jobs as with SAGE (``from sage.kernel.api.local_environment import
LocalEnvironment``, function classes from ``sage.common.core``); they run on
the C++ engine in ``sage._native``. See docs/python.md.
"""

from sage._native import (  # noqa: F401  (the exceptions of the API)
    InvalidPlanError,
    JobFailedError,
    PythonError,
    SageError,
    SerializationError,
)

__all__ = ["SageError", "InvalidPlanError", "JobFailedError", "SerializationError", "PythonError"]
