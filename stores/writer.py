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
* **Wait for the index.** Milvus builds a sealed segment's index in the background, on
  low-priority threads; until then the segment is loaded as raw vectors and searched by
  brute force. Writing faster than indexes are built grows that backlog without bound
  (memory, latency, and an insert rate that falls as the backlog takes the CPU). The writer
  pauses while more than ``max_unindexed_rows`` rows wait for their index, so it writes at
  the rate indexing sustains.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from pymilvus import Collection, DataType, MilvusException, utility

from mimamori.core import metrics
from mimamori.core.process_shared import ProcessShared
from mimamori.core.retry import retryable_errors, with_retries

log = logging.getLogger(__name__)

DEFAULT_REQUEST_BYTES = 2 * 1024 * 1024
DEFAULT_IN_FLIGHT = 2
UPSERT_TIMEOUT_S = 20  # an int: pymilvus takes only an int as the bound of its own retries
DEFAULT_MAX_UNINDEXED_ROWS = 300_000
# The upsert threads of a collection, shared by its writers in this process (Beam's copies of a
# DoFn, see mimamori.core.process_shared): at most ``in_flight`` requests on the wire, however
# many copies there are, and no threads that appear the hour two bundles first overlap.
_UPSERT_POOLS: ProcessShared[ThreadPoolExecutor] = ProcessShared(lambda pool: pool.shutdown(wait=True))
VECTOR_TYPES = (DataType.FLOAT_VECTOR, DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR, DataType.BINARY_VECTOR)


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
                 in_flight: int = DEFAULT_IN_FLIGHT, max_unindexed_rows: int | None = DEFAULT_MAX_UNINDEXED_ROWS,
                 index_check_s: float = 2.0):
        if request_bytes <= 0 or in_flight <= 0:
            raise ValueError("request_bytes and in_flight must be positive")
        if max_unindexed_rows is not None and max_unindexed_rows <= 0:
            raise ValueError("max_unindexed_rows must be positive (or None: never wait for the index)")
        self.collection = collection
        self.request_bytes = request_bytes
        self.in_flight = in_flight
        self.index_gate = IndexGate(collection, max_unindexed_rows, index_check_s) if max_unindexed_rows else None
        self._pool_key: tuple[str, int] | None = (collection.name, in_flight)
        self._pool = _UPSERT_POOLS.acquire(self._pool_key, lambda: ThreadPoolExecutor(
            max_workers=in_flight, thread_name_prefix=f"upsert-{collection.name}"))
        self._pending: deque[Future[int]] = deque()
        self._batch: list[Mapping[str, Any]] = []
        self._batch_bytes = 0
        self._text_fields = [f.name for f in collection.schema.fields if f.dtype == DataType.VARCHAR]
        self.rows_written = 0
        metrics.MILVUS_WRITE_ERRORS.labels(collection=collection.name)  # a zero series, before any error

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Queue rows; full requests are sent at once, at most ``in_flight`` of them outstanding."""
        for row in rows:
            for name in self._text_fields:
                if row.get(name) == "":
                    raise ValueError(
                        f"{self.collection.name}.{name} is empty: store a marker instead (stores/media.py's "
                        "NO_PAGE_URL). Milvus 2.3.5 cannot memory-map a string column of zero bytes "
                        "(milvus#31406), and a segment whose values were all empty would never load")
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
        only leaves the segments to seal on their own. A collection dropped meanwhile (tests and
        benchmarks drop theirs before Beam tears the workers down) has nothing left to flush.
        """
        try:
            self.wait()
            if flush and utility.has_collection(self.collection.name, using=self.collection._using):
                self.collection.flush(timeout=120)
        finally:
            if self._pool_key is not None:  # a second close gives nothing back twice
                _UPSERT_POOLS.release(self._pool_key)
                self._pool_key = None

    def _send(self) -> None:
        if not self._batch:
            return
        while len(self._pending) >= self.in_flight:
            self.rows_written += self._pending.popleft().result()  # back-pressure: the oldest first
        if self.index_gate:
            self.index_gate.wait()
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        self._pending.append(self._pool.submit(self._upsert, batch))

    def _upsert(self, rows: list[Mapping[str, Any]]) -> int:
        name = self.collection.name

        def attempt() -> None:
            began = time.perf_counter()
            try:
                # A timeout of its own: without one pymilvus retries a lost server 75 times, for
                # minutes, before it raises; this way our retry says what it waits for.
                self.collection.upsert(rows, timeout=UPSERT_TIMEOUT_S)
            except retryable_errors():
                metrics.MILVUS_WRITE_ERRORS.labels(collection=name).inc()
                raise
            metrics.MILVUS_WRITE_SECONDS.labels(collection=name).observe(time.perf_counter() - began)

        with_retries(attempt, f"upsert of {len(rows)} rows into {name}", store="milvus", operation="upsert")
        return len(rows)


class IndexGate:
    """Blocks while more than ``max_unindexed_rows`` rows of a collection wait for their vector index.

    Milvus counts the rows of flushed (sealed) segments and the rows its index covers
    (``utility.index_building_progress``); the difference is the backlog. Rows still in
    growing segments are not counted: their size is bounded by the segment size. The
    backlog is read at most every ``check_s`` seconds, so a write pays for the RPC rarely.
    """

    def __init__(self, collection: Collection, max_unindexed_rows: int, check_s: float = 2.0):
        self.collection = collection
        self.max_unindexed_rows = max_unindexed_rows
        self.check_s = check_s
        self._checked_at = -float("inf")
        self._index_name: str | None = None
        self.waited_s = 0.0
        metrics.MILVUS_INDEX_WAIT_SECONDS.labels(collection=collection.name)

    def unindexed_rows(self) -> int | None:
        """Rows in sealed segments without their index yet; None if the collection has no vector index."""
        if self._index_name is None:
            vector_fields = {f.name for f in self.collection.schema.fields if f.dtype in VECTOR_TYPES}
            names = [i.index_name for i in self.collection.indexes if i.field_name in vector_fields]
            if not names:
                return None
            self._index_name = names[0]
        try:
            progress = utility.index_building_progress(self.collection.name, index_name=self._index_name,
                                                       using=self.collection._using)
        except MilvusException as error:  # unknown for now: the write itself will meet a real outage
            log.warning("%s: cannot read the index's progress: %s", self.collection.name, error)
            return None
        return max(0, int(progress.get("total_rows", 0)) - int(progress.get("indexed_rows", 0)))

    def wait(self) -> None:
        """Return at once if the backlog was checked lately; else wait until it is small enough."""
        if time.monotonic() - self._checked_at < self.check_s:
            return
        began = time.monotonic()
        announced = began
        while (backlog := self.unindexed_rows()) is not None and backlog > self.max_unindexed_rows:
            if time.monotonic() - announced >= 60:
                log.warning("%s: %d rows still wait for their index; writes paused %.0f s",
                            self.collection.name, backlog, time.monotonic() - began)
                announced = time.monotonic()
            time.sleep(self.check_s)
        waited = time.monotonic() - began
        if backlog is not None and waited >= self.check_s:
            self.waited_s += waited
            metrics.MILVUS_INDEX_WAIT_SECONDS.labels(collection=self.collection.name).inc(waited)
        self._checked_at = time.monotonic()
