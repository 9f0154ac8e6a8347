"""The C allocator's settings for a ckptaudit command (glibc on Linux; elsewhere nothing).

Scoring a checkpoint makes a few temporaries the size of its validation set (a sorted column,
the curve's counts): 0.4-1 MB each, freed at once. glibc serves a block that large with a fresh
``mmap`` and gives it back on ``free`` (or trims the heap top that held it), so every checkpoint
pays the page faults of its temporaries again: on 100,000 rows the operating point's curve took
2.2 ms instead of 1.0 ms, and `pick -m roc_auc` 1.3-1.5 times its CPU time. A command keeps
blocks up to 32 MiB on the heap and up to 32 MiB of freed heap top instead: the memory is reused
by the next checkpoint, not returned and faulted in again (bench/bench_allocator.py measures
both settings; a trim threshold of 64-128 MiB was no faster and kept 34 MiB more at 20,000
checkpoints).

Only the command line and its worker processes call :func:`keep_freed_memory`: a library
user's process is left as it is. A setting of the user's own (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``, or glibc's tunables) wins, and
``CKPTAUDIT_MALLOC=system`` leaves the allocator alone.
"""

from __future__ import annotations

import os
import sys

#: mallopt's parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  #: glibc's largest (HEAP_MAX / 2 on 64-bit)
TRIM_THRESHOLD = 32 << 20

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")
_done = False


def keep_freed_memory() -> bool:
    """Set the thresholds above once per process; whether they were set."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("CKPTAUDIT_MALLOC", "") == "system":
        return False
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt  # glibc (musl has no mallopt: AttributeError)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # NOTE: mallopt returns 1 on success; setting the mmap threshold turns glibc's own
    # adjustment off, so the trim threshold is set as well
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
