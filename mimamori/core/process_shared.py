"""Things one worker process holds once, however many copies of a DoFn Beam makes.

Beam runs a fused stage in a *bundle processor* with DoFn instances of its own, and makes
another one whenever two bundles of the stage run at once; it keeps the copy while bundles
keep coming. What a DoFn makes in ``setup`` (connections, thread pools) is then multiplied by
the process's peak concurrency, and a 24/7 worker's descriptors and threads step up at
whatever hour the load first makes two bundles overlap. What is made through a
``ProcessShared`` is made once per key and process: ``acquire`` in ``setup``, ``release``
in ``teardown``, and the last release closes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class ProcessShared(Generic[T]):
    """A reference-counted map from a key to the one value this process holds for it."""

    def __init__(self, close: Callable[[T], None]):
        self._close = close
        self._held: dict[Hashable, list] = {}  # key -> [value, users]
        self._lock = threading.Lock()

    def acquire(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            entry = self._held.get(key)
            if entry is None:
                entry = self._held[key] = [make(), 0]
            entry[1] += 1
            return entry[0]

    def release(self, key: Hashable) -> None:
        with self._lock:
            entry = self._held.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del self._held[key]
        self._close(entry[0])

    def users(self, key: Hashable) -> int:
        with self._lock:
            entry = self._held.get(key)
            return entry[1] if entry else 0
