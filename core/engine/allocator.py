"""Keep glibc from returning large blocks to the kernel after every step.

glibc hands allocations over 32 MiB back to the kernel and re-faults them on the next step; in the
reference runs kernel time reached 29-48% of CPU time (PERFORMANCE.md). ``mallopt`` at start-up has
the effect of ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...`` without an
environment variable. It holds more memory (about 10% more peak RSS measured on Yelp).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


@functools.cache
def tune_allocator() -> bool:
    """Apply the settings once per process; False where glibc's ``mallopt`` is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok_mmap = mallopt(M_MMAP_MAX, 0)
    ok_trim = mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    return bool(ok_mmap and ok_trim)
