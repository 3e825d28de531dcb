"""Upserts into one Milvus collection: requests cut by bytes, a few in flight, no flush per batch.

The pipeline's writers and ``bench/scale.py`` write through this class, so the policy the
benchmark measures is the one production runs (reasons and numbers in ``docs/scale.md``):

* **Requests of about 2 MB.** A request's cost is mostly per row (pymilvus packs every
  field of every row in Python), but each request also pays a round trip and a time-tick
  wait in the proxy; past ~1-2 MB nothing more is gained, and gRPC's 64 MB limit stays far.
  Rows are cut by estimated bytes, not by count, so 128-d and 512-d vectors get requests
  of the same weight.
* **A few requests in flight.** While one request is packed in Python, another waits on
  the server; a bounded window keeps memory bounded and gives back-pressure.
* **No flush per batch.** A write that Milvus acknowledged is in its message log already;
  ``flush`` only seals the growing segments early, and sealing many small segments makes
  Milvus index them, compact them and index them again. Segments seal on their own
  (size, idle time); ``close`` flushes once, at shutdown.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from pymilvus import Collection

from mimamori import metrics
from mimamori.retry import retryable_errors, with_retries

DEFAULT_REQUEST_BYTES = 2 * 1024 * 1024
DEFAULT_IN_FLIGHT = 2


def row_bytes(row: Mapping[str, Any]) -> int:
    """About how many bytes a row weighs on the wire: vectors and strings by length, numbers as 8."""
    size = 0
    for value in row.values():
        if isinstance(value, np.ndarray):
            size += value.nbytes
        elif isinstance(value, (list, tuple)):
            size += 4 * len(value)
        elif isinstance(value, (str, bytes)):
            size += len(value)
        elif isinstance(value, dict):
            size += 16 * len(value)
        else:
            size += 8
    return size


class MilvusWriter:
    """Upsert rows into ``collection``; ``wait`` when they must be durable, ``close`` at shutdown."""

    def __init__(self, collection: Collection, request_bytes: int = DEFAULT_REQUEST_BYTES,
                 in_flight: int = DEFAULT_IN_FLIGHT):
        if request_bytes <= 0 or in_flight <= 0:
            raise ValueError("request_bytes and in_flight must be positive")
        self.collection = collection
        self.request_bytes = request_bytes
        self.in_flight = in_flight
        self._pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix=f"upsert-{collection.name}")
        self._pending: deque[Future[int]] = deque()
        self._batch: list[Mapping[str, Any]] = []
        self._batch_bytes = 0
        self.rows_written = 0
        metrics.MILVUS_WRITE_ERRORS.labels(collection=collection.name)  # a zero series, before any error

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Queue rows; full requests are sent at once, at most ``in_flight`` of them outstanding."""
        for row in rows:
            self._batch.append(row)
            self._batch_bytes += row_bytes(row)
            if self._batch_bytes >= self.request_bytes:
                self._send()

    def wait(self) -> int:
        """Send what is queued and wait for every request; return rows acknowledged so far.

        After it returns, the rows are in Milvus's message log: durable and searchable. The
        first failed request's error (after its retries) is raised here.
        """
        self._send()
        while self._pending:
            self.rows_written += self._pending.popleft().result()
        return self.rows_written

    def close(self, flush: bool = True) -> None:
        """Wait for everything, then (by default) flush the collection once: at shutdown only.

        The flush is tried once, not retried: the rows are durable already, and a failed flush
        (say, the collection dropped meanwhile) only leaves the segments to seal on their own.
        """
        try:
            self.wait()
            if flush:
                self.collection.flush(timeout=120)
        finally:
            self._pool.shutdown(wait=True)

    def _send(self) -> None:
        if not self._batch:
            return
        while len(self._pending) >= self.in_flight:
            self.rows_written += self._pending.popleft().result()  # back-pressure: the oldest first
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        self._pending.append(self._pool.submit(self._upsert, batch))

    def _upsert(self, rows: list[Mapping[str, Any]]) -> int:
        name = self.collection.name

        def attempt() -> None:
            began = time.perf_counter()
            try:
                self.collection.upsert(rows)
            except retryable_errors():
                metrics.MILVUS_WRITE_ERRORS.labels(collection=name).inc()
                raise
            metrics.MILVUS_WRITE_SECONDS.labels(collection=name).observe(time.perf_counter() - began)

        with_retries(attempt, f"upsert of {len(rows)} rows into {name}")
        return len(rows)
