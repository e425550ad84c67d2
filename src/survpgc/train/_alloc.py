"""Keep large tensors' memory in the process between training steps (Linux / glibc).

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and returns it
to the system on free. A training step on a bag of 64k patches allocates dozens of such blocks (64k × 256
floats = 64 MB each), so every step page-faults and zero-fills them again: the step time grows faster than
the bag (measured in ``benchmarks/models.py``). Raising the mmap and trim thresholds lets the allocator
reuse those blocks, which makes time linear in the bag size again. It changes no result, only where memory
comes from; the process keeps its peak memory reserved until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

__all__ = ["keep_large_allocations"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DONE = False


def keep_large_allocations(threshold_bytes: int = 1 << 30) -> bool:
    """Raise glibc's mmap / trim thresholds to ``threshold_bytes`` (once per process). Returns True when
    applied; False on other platforms or C libraries (nothing changes there)."""
    global _DONE
    if _DONE:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    value = min(int(threshold_bytes), 2**31 - 1)
    ok = mallopt(_M_MMAP_THRESHOLD, value) == 1 and mallopt(_M_TRIM_THRESHOLD, value) == 1
    _DONE = ok
    if ok:
        log.debug("glibc mmap/trim thresholds raised to %d bytes", value)
    return ok
