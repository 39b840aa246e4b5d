"""How the process's allocator hands memory back.

glibc serves an allocation above its mmap threshold from a mapping of its
own, returned to the system when it is freed. The threshold starts at 128
KiB but rises to the size of each such block freed (up to 32 MiB): after the
first pack span or decompressed chunk is freed, later ones of that size come
from the heap arenas (one per thread), where freed memory mostly stays
resident. A restore's or a check's workers then keep their high-water marks
for good. Fixing the threshold (which turns that rise off) returns every
buffer of a MiB or more as soon as it is freed, for a page fault per 4 KiB
on the next one (under 1 % of a restore's time here).
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
LARGE_BUFFER = 1024 * 1024


def return_large_buffers(threshold: int = LARGE_BUFFER) -> bool:
    """Have buffers of `threshold` bytes or more go back to the system when
    freed; False where the C library is not glibc (nothing is changed)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing useful
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


_pause_lock = threading.Lock()
_pauses = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a step builds many objects that all
    live on (a restore's items, one per entry of the snapshot).

    The collector runs every 700 new containers and, every so often, walks
    every object the process holds: while tens of thousands of long-lived
    nodes are built, it walks them again and again (a sixth of the time a
    restore of 20,000 files takes to decode its trees). Nothing is lost: what
    those steps leave in reference cycles is collected once the collector
    runs again. Pauses nest and may overlap across threads; the collector
    comes back when the last one ends, and only if it was on before the first.
    """
    global _pauses, _was_enabled
    with _pause_lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
