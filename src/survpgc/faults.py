"""Named fault points, for the fault-injection tests: kill this process at a chosen place.

Long-running commands call :func:`fault_point` at the places where a crash is most dangerous (inside the
encoder, during an HDF5 write, while a checkpoint is being written, while the report is built). Nothing
happens unless the environment variable ``SURVPGC_FAULT`` names that point::

    SURVPGC_FAULT=h5-write        # SIGKILL at the first time the point is reached
    SURVPGC_FAULT=h5-write@3      # ... at the third time

The tests then rerun the same command and check that the outputs equal those of an uninterrupted run and
that no temporary file is left. The cost when the variable is unset is one dictionary lookup.

This module imports nothing else from survpgc.
"""

from __future__ import annotations

import os
import signal

__all__ = ["ENV", "fault_point"]

#: The environment variable naming the fault point (``name`` or ``name@k``).
ENV = "SURVPGC_FAULT"

_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """SIGKILL this process when ``$SURVPGC_FAULT`` names this point and its hit count is reached."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, nth = spec.partition("@")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= (int(nth) if nth else 1):
        os.kill(os.getpid(), signal.SIGKILL)
