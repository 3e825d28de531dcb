"""Prometheus metrics of the pipeline (prometheus-client, base units, Prometheus naming).

Each worker process serves them over HTTP on 127.0.0.1 (``metrics.port``; 0 picks a free
port, written to the log). Metric objects are module-level, one per process.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

STAGE_SECONDS = Histogram("mimamori_stage_duration_seconds", "Time spent per element in a pipeline stage",
                          ["stage"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
STAGE_ELEMENTS = Counter("mimamori_stage_elements_total", "Elements processed by a pipeline stage", ["stage"])
# The CPU time of the thread that ran the stage: its duration less this is time spent waiting (for
# a core, for the interpreter lock, or for a service), which tells a starved worker from a slow model.
STAGE_CPU_SECONDS = Counter("mimamori_stage_cpu_seconds", "CPU time of the thread running a pipeline stage",
                            ["stage"])
# Time the pipeline's thread waited for a read-ahead stage's result (transforms/read_ahead.py):
# near zero while the read-ahead keeps up; growing, it is that stage, not detection, that sets the pace.
READ_AHEAD_WAIT_SECONDS = Counter("mimamori_read_ahead_wait_seconds", "Time waited for a read-ahead stage's result",
                                  ["stage"])
MEDIA = Counter("mimamori_media_total", "Media items by outcome", ["outcome"])
FACES_PER_MEDIA = Histogram("mimamori_faces_per_media", "Faces found in one media item",
                            buckets=(0, 1, 2, 3, 5, 10, 20, 50, 100))
FACES_INDEXED = Counter("mimamori_faces_indexed_total", "Faces written to the face collection", ["model"])
FACES_REMOVED = Counter("mimamori_faces_removed_total",
                        "Faces deleted because reprocessing their media no longer found them")
FACES_DROPPED = Counter("mimamori_faces_over_cap_total", "Faces beyond max_faces_per_image, not indexed")
DEDUPE_HITS = Counter("mimamori_dedupe_hits_total", "Media already indexed, recorded as sightings", ["match"])
DEAD_LETTERS = Counter("mimamori_dead_letters_total", "Elements sent to the dead-letter topic",
                       ["reason", "stage"])
BATCH_SIZE = Histogram("mimamori_batch_size", "Elements per batch", ["stage"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
MILVUS_WRITE_SECONDS = Histogram("mimamori_milvus_write_duration_seconds", "Latency of one Milvus upsert",
                                 ["collection"])
MILVUS_INDEX_WAIT_SECONDS = Counter("mimamori_milvus_index_wait_seconds_total",
                                    "Time writes paused for Milvus to index sealed segments", ["collection"])
MILVUS_WRITE_ERRORS = Counter("mimamori_milvus_write_errors_total", "Failed Milvus upserts (retried)",
                              ["collection"])
WATCHLIST_MATCHES = Counter("mimamori_watchlist_matches_total", "New matches of indexed faces with enrolled cases",
                            ["platform"])
REVIEW_SECONDS = Histogram("mimamori_watchlist_review_delay_seconds", "Time from a match to its review",
                           buckets=(60, 600, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400))
API_REQUESTS = Counter("mimamori_api_requests_total", "API requests", ["method", "route", "status"])
API_SECONDS = Histogram("mimamori_api_request_duration_seconds", "API request latency", ["route"],
                        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
WORKER_DEVICE = Gauge("mimamori_worker_device_info", "The device a worker runs its models on (value 1)", ["device"])
GPU_UTILIZATION = Gauge("mimamori_gpu_utilization_ratio", "GPU utilisation of a worker's device (GPU workers only)",
                        ["device"])
CONSUMER_LAG = Gauge("mimamori_consumer_lag_messages", "Messages not yet read, per partition",
                     ["topic", "partition"])

# Issue 22 (R1): outages of the stores a process talks to (core/retry.py counts and times them).
STORE_RETRIES = Counter("mimamori_store_retries_total", "Calls to a store retried after an outage-like failure",
                        ["store", "operation"])
STORE_UNREACHABLE_SECONDS = Gauge("mimamori_store_unreachable_seconds",
                                  "Seconds this process has been failing to reach a store (0: reachable)", ["store"])

# A worker's C heap (core/native_heap.py): what malloc_trim handed back to the system.
NATIVE_HEAP_RELEASED = Counter("mimamori_native_heap_released_bytes_total",
                               "Resident memory this process's free heap pages gave back to the system (malloc_trim)")

# Issue 19 (T2): the re-check service (services/rechecks.py). Takedowns by state and overdue work
# come from the case database through the exporter (mimamori_takedowns, mimamori_takedowns_overdue).
RECHECK_OUTCOMES = Counter("mimamori_recheck_outcomes_total", "Re-checks of takedown URLs recorded, by outcome",
                           ["outcome"])
RECHECK_FETCH_FAILURES = Counter("mimamori_recheck_fetch_failures_total",
                                 "Re-check fetches that failed, by what was fetched and why", ["kind", "reason"])
RECHECK_FETCH_SECONDS = Histogram("mimamori_recheck_fetch_duration_seconds", "Time of one re-check fetch",
                                  ["kind"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60))
TAKEDOWN_REAPPEARANCES = Counter("mimamori_takedown_reappearances_total",
                                 "Removed takedown URLs found serving the content again")
RECHECK_RECORD_ERRORS = Counter("mimamori_recheck_record_errors_total",
                                "Re-checks whose result could not be written to the case database")
RECHECK_LAST_PASS = Gauge("mimamori_recheck_last_pass_timestamp_seconds",
                          "When the re-check service last finished a pass over the due takedowns (Unix time)")

# Issue 20 (M3): per-case models (services/case_models.py): trainings by why and how they ended, and the
# matches a case's head took under the case threshold.
CASE_MODEL_TRAININGS = Counter("mimamori_case_model_trainings_total", "Per-case model trainings",
                               ["reason", "outcome"])
CASE_MODEL_MATCHES = Counter("mimamori_case_model_matches_total",
                             "Matches a case's head accepted under the case threshold", ["source"])

_server_lock = threading.Lock()
_server_port: int | None = None


def serve_metrics(port: int, address: str = "127.0.0.1") -> int:
    """Start this process's metrics endpoint once; return its port."""
    global _server_port
    with _server_lock:
        if _server_port is None:
            try:
                server, _thread = start_http_server(port, addr=address)
            except OSError:  # another worker process on this host holds the port: take a free one
                server, _thread = start_http_server(0, addr=address)
            _server_port = server.server_port
            log.info("metrics on http://%s:%d/metrics", address, _server_port)
        return _server_port


@contextlib.contextmanager
def stage_timer(stage: str) -> Iterator[None]:
    """Time a stage's work: its duration (``STAGE_SECONDS``) and its thread's CPU time (``STAGE_CPU_SECONDS``)."""
    began, cpu = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(stage=stage).observe(time.perf_counter() - began)
        STAGE_CPU_SECONDS.labels(stage=stage).inc(time.thread_time() - cpu)
