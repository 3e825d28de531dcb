"""Give the C heap's free pages back to the system now and then, in a process that runs for days.

glibc's malloc keeps the memory a process frees for its next allocations, in the heap of the
thread's arena. A worker that detects faces in one large photo (a 1280 px pyramid, P-Net's
feature maps: a few hundred MiB for a moment) frees it all afterwards, yet its resident memory
stays at that high-water mark for good, and each worker thread's arena keeps its own. Resident
memory then steps up with the largest media seen so far and looks like a leak in a soak
(docs/benchmarks.md: +121 MiB at minute 53 of a soak, when its feed reached the first large
photos). ``malloc_trim(0)`` hands the free pages of every arena back (``madvise``); the next
large photo faults them in again, a few milliseconds' work against a detection's hundreds.

Only glibc has ``malloc_trim``: elsewhere (musl, macOS) this does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
import time

from mimamori.core import metrics

log = logging.getLogger(__name__)

_lock = threading.Lock()
_trimmer: threading.Thread | None = None
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def resident_bytes() -> int | None:
    """This process's resident memory (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def release_free_memory() -> int | None:
    """Hand the heap's free pages back now; the resident bytes that went (None: no malloc_trim here)."""
    if _TRIM is None:
        return None
    before = resident_bytes()
    _TRIM(0)
    after = resident_bytes()
    released = max(0, before - after) if before is not None and after is not None else 0
    metrics.NATIVE_HEAP_RELEASED.inc(released)
    return released


def start_trimming(interval_s: float) -> bool:
    """Release free memory every ``interval_s`` in a daemon thread, once per process (0: never).

    True when this call started the thread.
    """
    global _trimmer
    if interval_s <= 0 or _TRIM is None:
        return False
    with _lock:
        if _trimmer is not None:
            return False
        def trim_forever() -> None:  # a daemon thread: it ends with the process
            while True:
                time.sleep(interval_s)
                release_free_memory()

        _trimmer = threading.Thread(target=trim_forever, name="mimamori-heap-trim", daemon=True)
        _trimmer.start()
    log.info("returning free heap memory to the system every %.0f s", interval_s)
    return True
