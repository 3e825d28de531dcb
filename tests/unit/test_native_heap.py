"""The worker's heap trimmer: freed memory goes back to the system, and one thread per process."""

from __future__ import annotations

import ctypes
import threading

import pytest

from mimamori.core import metrics, native_heap

pytestmark = pytest.mark.skipif(native_heap._TRIM is None, reason="no glibc malloc_trim here")

_libc = ctypes.CDLL("libc.so.6")
_libc.malloc.restype, _libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]


def _fragment_the_heap(count: int, size: int) -> list[int]:
    """Blocks under the mmap threshold, written so they are resident, then freed with a small block
    kept after each: the free memory is not at the heap's top, so only malloc_trim can give it back
    (as a worker's heap looks after a large photo). Returns the small blocks, to free later."""
    blocks, pins = [], []
    for _ in range(count):
        blocks.append(_libc.malloc(size))
        pins.append(_libc.malloc(16))
    for block in blocks:
        ctypes.memset(block, 1, size)
    for block in blocks:
        _libc.free(block)
    return pins


def test_freed_heap_memory_is_handed_back(monkeypatch: pytest.MonkeyPatch) -> None:
    release = native_heap.release_free_memory
    # A trimmer thread another test started in this process looks the function up on each turn:
    # it must not hand the blocks back before this test has measured what the heap kept.
    monkeypatch.setattr(native_heap, "release_free_memory", lambda: None)
    release()
    before = native_heap.resident_bytes()
    pins = _fragment_the_heap(8000, 16 * 1024)  # 125 MiB in 16 KiB blocks: far below the mmap threshold
    kept = native_heap.resident_bytes() - before
    counted = metrics.NATIVE_HEAP_RELEASED._value.get()
    released = release()
    for pin in pins:
        _libc.free(pin)
    assert kept > 100 * 2**20, "glibc kept none of the freed blocks: the test measures nothing"
    assert released > 0.8 * kept
    assert metrics.NATIVE_HEAP_RELEASED._value.get() - counted == released


def test_one_trimmer_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native_heap, "_trimmer", None)
    calls = threading.Event()
    monkeypatch.setattr(native_heap, "release_free_memory", calls.set)
    assert native_heap.start_trimming(0) is False
    assert native_heap.start_trimming(0.01) is True
    assert native_heap.start_trimming(0.01) is False
    assert calls.wait(5), "the trimmer never ran"
    assert native_heap._trimmer.name == "mimamori-heap-trim" and native_heap._trimmer.daemon
