"""Retrying calls to the services (Milvus, MinIO, Kafka, the case database) when they, not the input, fail.

A store that goes away (a crash, a restart, a network cut) is waited for, not given up on: a
24/7 pipeline that failed its bundle after a few seconds would end the run. ``with_retries``
tries again with a backoff capped at ``MAX_DELAY_S`` until ``patience_s`` has passed. What the
process waits for is said once, when the wait begins, again every ``REPORT_EVERY_S`` while it
lasts, and once when the store answers again (``OUTAGES``, the logger ``mimamori.outages``,
which ``mimamori run`` prints); every retry is counted in ``mimamori_store_retries_total`` and
the outage's length is ``mimamori_store_unreachable_seconds`` (the alert
``MimamoriStoreUnreachable`` fires at five minutes).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

from mimamori.core import metrics

log = logging.getLogger("mimamori.outages")
T = TypeVar("T")

STORES = ("milvus", "minio", "kafka", "database")
DEFAULT_PATIENCE_S = 1800.0  # half an hour: longer than any restart; after that the bundle fails
MAX_DELAY_S = 5.0
REPORT_EVERY_S = 30.0
# A call that has not answered for this long is waiting for its store too: clients retry inside
# (pymilvus tries a lost server 75 times over minutes before it raises), which must not be silent.
SLOW_CALL_S = 15.0


def retryable_errors() -> tuple[type[BaseException], ...]:
    """Errors of the infrastructure (connection refused, timeouts), not of the input."""
    import grpc
    import urllib3
    from kafka.errors import KafkaError
    from pymilvus.exceptions import MilvusException
    from sqlalchemy.exc import OperationalError  # the case database busy or unreachable

    # grpc.RpcError: pymilvus lets some through as they are (a deadline met while Milvus is gone).
    return (ConnectionError, TimeoutError, urllib3.exceptions.HTTPError, MilvusException, KafkaError,
            OperationalError, grpc.RpcError)


def input_errors() -> tuple[type[BaseException], ...]:
    """Milvus errors that say the request itself is wrong (a bad row): retrying cannot help."""
    from pymilvus.exceptions import DataNotMatchException, DataTypeNotMatchException, ParamError

    return (ParamError, DataNotMatchException, DataTypeNotMatchException)


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` says a service is away or overloaded (try again), not that the request is wrong.

    The object store answers 5xx while it starts (``XMinioServerNotInitialized``) or sheds load
    (``SlowDown``): those are outages too, unlike its 4xx answers (``NoSuchKey``: a dead letter).
    """
    if isinstance(error, input_errors()):
        return False
    if isinstance(error, retryable_errors()):
        return True
    from minio.error import InvalidResponseError, S3Error, ServerError

    if isinstance(error, ServerError):
        return True
    if isinstance(error, S3Error | InvalidResponseError):
        status = getattr(getattr(error, "response", None), "status", None) or getattr(error, "_code", None)
        return isinstance(status, int) and status >= 500
    return False


def store_of(error: BaseException) -> str:
    """Which store an infrastructure error came from, by its type (for callers that do not say)."""
    module = type(error).__module__
    for prefix, store in (("pymilvus", "milvus"), ("grpc", "milvus"), ("kafka", "kafka"), ("urllib3", "minio"),
                          ("minio", "minio"), ("sqlalchemy", "database")):
        if module.startswith(prefix):
            return store
    return "service"


def _stamp(monotonic: float) -> str:
    """A monotonic instant as wall-clock UTC, to the second."""
    wall = time.time() - (time.monotonic() - monotonic)
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Outages:
    """Which stores this process is waiting for and since when (one per process, thread-safe).

    Many threads may meet one outage at once (two upserts in flight, a crop upload): the wait
    is announced once, not once per thread, and so is the recovery.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: dict[str, float] = {}
        self._reported: dict[str, float] = {}
        self._what: dict[str, str] = {}
        self.history: list[tuple[str, float, float]] = []  # (store, since, until), monotonic, ended outages
        for store in STORES:
            metrics.STORE_UNREACHABLE_SECONDS.labels(store=store).set_function(
                lambda store=store: self.unreachable_for(store))

    def unreachable_for(self, store: str) -> float:
        """Seconds since this process first failed to reach ``store`` in the outage now going on; 0: none."""
        with self._lock:
            since = self._since.get(store)
        return 0.0 if since is None else time.monotonic() - since

    def waiting(self) -> dict[str, float]:
        """Store -> seconds waited, for the stores unreachable now."""
        now = time.monotonic()
        with self._lock:
            return {store: now - since for store, since in self._since.items()}

    def failed(self, store: str, what: str, error: BaseException | str, since: float | None = None) -> None:
        """A call to ``store`` failed as an outage does (or, begun at ``since``, hangs): announce the
        wait once, then every REPORT_EVERY_S."""
        now = time.monotonic()
        with self._lock:
            first = store not in self._since
            since = self._since.setdefault(store, since if since is not None else now)
            self._what[store] = what
            last = self._reported.get(store)
            if last is not None and now - last < REPORT_EVERY_S:
                return
            self._reported[store] = now
        if first:
            log.warning("waiting for %s since %s: %s failed: %s", store, _stamp(since), what, _short(error))
        else:
            log.warning("still waiting for %s, unreachable for %.0f s (since %s): %s failed: %s",
                        store, now - since, _stamp(since), what, _short(error))

    def recovered(self, store: str) -> None:
        """A call to ``store`` succeeded: if it had been unreachable, say for how long."""
        if store not in self._since:  # unlocked fast path: the common case, no outage
            return
        now = time.monotonic()
        with self._lock:
            since = self._since.pop(store, None)
            self._reported.pop(store, None)
            what = self._what.pop(store, "")
            if since is not None:
                self.history.append((store, since, now))
        if since is not None:
            log.warning("%s recovered after %.0f s unreachable (since %s, until %s; %s)",
                        store, now - since, _stamp(since), _stamp(now), what)

    def summary(self) -> list[str]:
        """One line per outage this process lived through (ended or going on), oldest first."""
        now = time.monotonic()
        with self._lock:
            spans = [*self.history, *((store, since, None) for store, since in self._since.items())]
        return [f"{store} was unreachable for {(until or now) - since:.0f} s, since {_stamp(since)}, "
                + (f"recovered {_stamp(until)}" if until is not None else "not recovered")
                for store, since, until in sorted(spans, key=lambda span: span[1])]


def _short(error: BaseException | str) -> str:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


OUTAGES = Outages()


class _Watchdog:
    """Reports calls to a store that hang past SLOW_CALL_S as a wait for that store: one thread
    per process, started at the first watched call, looking once a second."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[int, tuple[str, str, float]] = {}  # token -> store, what, started
        self._slow: set[int] = set()
        self._next = 0
        self._thread: threading.Thread | None = None

    def begin(self, store: str, what: str) -> int:
        with self._lock:
            self._next += 1
            self._calls[self._next] = (store, what, time.monotonic())
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="mimamori-outage-watchdog", daemon=True)
                self._thread.start()
            return self._next

    def end(self, token: int) -> bool:
        """Forget the call; True if it had been reported as hanging."""
        with self._lock:
            self._calls.pop(token, None)
            if token in self._slow:
                self._slow.discard(token)
                return True
            return False

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            now = time.monotonic()
            with self._lock:
                hanging = [(token, store, what, began) for token, (store, what, began) in self._calls.items()
                           if now - began >= SLOW_CALL_S]
                self._slow.update(token for token, *_ in hanging)
            for _token, store, what, began in hanging:
                OUTAGES.failed(store, what, f"no answer for {now - began:.0f} s", since=began)


WATCHDOG = _Watchdog()


@contextlib.contextmanager
def watching(store: str, what: str) -> Iterator[None]:
    """A block that talks to ``store``: if it hangs past SLOW_CALL_S, that is a wait for the store,
    said as such; when it then ends, the store has recovered. For calls whose clients retry inside
    (pymilvus without a timeout) and that ``with_retries`` does not wrap one by one."""
    token = WATCHDOG.begin(store, what)
    try:
        yield
    finally:
        hung = WATCHDOG.end(token)
    if hung:  # only an answer is a recovery: an error leaves the outage as it is
        OUTAGES.recovered(store)


def with_retries(action: Callable[[], T], what: str, *, store: str | None = None, operation: str | None = None,
                 patience_s: float = DEFAULT_PATIENCE_S, first_delay_s: float = 0.5,
                 max_delay_s: float = MAX_DELAY_S) -> T:
    """Call ``action``; while it fails as an outage does, wait and call it again, for up to ``patience_s``.

    ``store`` (milvus, minio, kafka, database; by the error's type if not given) and
    ``operation`` (upsert, put_crop, ...) label the retry metric and the messages. An input
    error, or the failure after ``patience_s``, propagates.
    """
    delay = first_delay_s
    deadline = time.monotonic() + patience_s
    failed_store: str | None = None
    while True:
        token = WATCHDOG.begin(store, what) if store is not None else None
        try:
            result = action()
        except Exception as error:
            if not is_outage(error):
                raise
            failed_store = store or store_of(error)
            if time.monotonic() + delay > deadline:
                log.error("gave up on %s after %.0f s of %s outage: %s", what, patience_s, failed_store,
                          _short(error))
                raise
            metrics.STORE_RETRIES.labels(store=failed_store, operation=operation or "call").inc()
            OUTAGES.failed(failed_store, what, error)
            time.sleep(delay)
            delay = min(delay * 2, max_delay_s)
            continue
        finally:
            if token is not None:
                WATCHDOG.end(token)
        answered = failed_store or store  # a store known to be reachable now (after a hang too)
        if answered is not None:
            OUTAGES.recovered(answered)
        return result
