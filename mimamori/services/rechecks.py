"""Re-checks of takedown URLs: is the content still up, gone, or has the page changed? (issue 19)

For each due takedown (``takedowns.due_rechecks``) the page URL is fetched through the SSRF-safe
fetcher (mimamori/media/fetcher.py). The direct media URL, when the takedown has one, and the
images an HTML page shows (``img`` src/srcset, ``og:image``, ``twitter:image``; at most
``max_images``) are fetched the same way and compared with the takedown's media: the same
SHA-256, a pHash within ``phash_distance`` bits, or a PDQ hash within ``pdq_distance`` bits.

- **gone**: 404/410, a removed-content page by the host's rules, or a DNS failure (which
  ``record_recheck`` counts: only several in a row act as gone), unless the media URL itself
  still serves the image;
- **still_up**: the page or media URL serves the same content;
- **changed**: the page answers but the content is not found on it;
- **error**: the host could not be judged (timeout, TLS, too large, redirect loop, 5xx ...),
  recorded with its reason, no transition.

Checks run on a thread pool with at most ``per_host`` at a time on one host, so a slow host
holds only its own slots; results are recorded from one thread, one transaction each. The check
id comes from the takedown and its due time: a service killed mid-run, or two running at once,
records one check per due slot and never applies a transition twice (``RecheckResult.repeat``).
"""

from __future__ import annotations

import collections
import datetime as dt
import html.parser
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from mimamori.core import metrics
from mimamori.core.config import PipelineConfig
from mimamori.media.fetcher import FetchFailure, FetchResult

log = logging.getLogger(__name__)

GONE_STATUSES = (404, 410)
HTML_TYPES = ("text/html", "application/xhtml+xml")


class Fetches(Protocol):
    def fetch(self, url: str) -> FetchResult: ...


@dataclass(frozen=True)
class RecheckOptions:
    workers: int = 16
    per_host: int = 2
    max_images: int = 12
    phash_distance: int = 8
    pdq_distance: int = 31
    pdq_min_quality: int = 50
    batch: int = 200


@dataclass(frozen=True)
class Verdict:
    outcome: str                      # one of stores.takedowns.CHECK_OUTCOMES
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSummary:
    checked: int = 0
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    transitions: int = 0
    reappeared: list[int] = field(default_factory=list)
    repeats: int = 0
    record_errors: int = 0
    elapsed_s: float = 0.0


# -- the content on a page -------------------------------------------------------------------------
class _ImageLinks(html.parser.HTMLParser):
    """Image URLs an HTML page shows or announces, in page order, ``og:image`` first."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.announced: list[str] = []
        self.shown: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): value or "" for name, value in attrs}
        if tag == "meta" and (values.get("property") or values.get("name", "")).lower() in (
                "og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src"):
            self.announced.append(values.get("content", ""))
        elif tag == "link" and values.get("rel", "").lower() == "image_src":
            self.announced.append(values.get("href", ""))
        elif tag in ("img", "source"):
            for attribute in ("src", "data-src"):
                self.shown.append(values.get(attribute, ""))
            for candidate in (values.get("srcset", "") + "," + values.get("data-srcset", "")).split(","):
                self.shown.append(candidate.strip().split(" ")[0])
        elif tag == "video":
            self.shown.append(values.get("poster", ""))


def page_images(body: bytes, base_url: str, limit: int) -> list[str]:
    """At most ``limit`` distinct http(s) image URLs of an HTML page, resolved against ``base_url``."""
    parser = _ImageLinks()
    try:
        parser.feed(body.decode("utf-8", errors="replace"))
        parser.close()
    except (AssertionError, ValueError):  # html.parser gives up on some broken markup: keep what it found
        pass
    found: list[str] = []
    for link in parser.announced + parser.shown:
        if not link or link.startswith("data:"):
            continue
        absolute = urljoin(base_url, link.strip())
        if urlsplit(absolute).scheme in ("http", "https") and absolute not in found:
            found.append(absolute)
        if len(found) >= limit:
            break
    return found


@dataclass(frozen=True)
class Reference:
    """The takedown's media as hashes: what "the same content" is compared with."""

    sha256: str | None
    phash: bytes | None
    pdq: bytes | None

    @classmethod
    def of(cls, target: Any) -> Reference:
        def unhex(text: str | None) -> bytes | None:
            try:
                return bytes.fromhex(text) if text else None
            except ValueError:
                return None

        return cls(target.media_sha256, unhex(target.media_phash), unhex(getattr(target, "media_pdq", None)))

    @property
    def empty(self) -> bool:
        return not (self.sha256 or self.phash or self.pdq)


def same_content(reference: Reference, body: bytes, content_type: str, options: RecheckOptions,
                 max_bytes: int) -> dict[str, Any] | None:
    """How ``body`` matches the reference ({"matched": "sha256"|"phash"|"pdq", "distance": n}), or None."""
    from mimamori.media.decode import MediaError, decode_media, sha256_hex

    if reference.sha256 and sha256_hex(body) == reference.sha256:
        return {"matched": "sha256", "distance": 0}
    if reference.phash is None and reference.pdq is None:
        return None
    try:
        media = decode_media(body, content_type, PipelineConfig(max_media_bytes=max_bytes, min_side=16))
    except MediaError as error:
        log.debug("not an image: %s", error)
        return None
    for frame in media.frames:
        if (found := _hash_match(reference, frame.image, options)) is not None:
            return found
    return None


def _hash_match(reference: Reference, image: Any, options: RecheckOptions) -> dict[str, Any] | None:
    from mimamori.media.phash import perceptual_hash

    if reference.phash is not None:
        distance = _hamming(perceptual_hash(image), reference.phash)
        if distance <= options.phash_distance:
            return {"matched": "phash", "distance": distance}
    if reference.pdq is not None:
        try:
            from mimamori.media import pdq
        except ImportError:  # PDQ (issue 20) not installed: pHash and SHA-256 decide
            return None
        hashed = pdq.pdq_hash(image)
        distance = _hamming(hashed.bits, reference.pdq)
        if hashed.quality >= options.pdq_min_quality and distance <= options.pdq_distance:
            return {"matched": "pdq", "distance": distance}
    return None


def _hamming(a: bytes, b: bytes) -> int:
    if len(a) != len(b):
        return 1 << 30
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


# -- one check -----------------------------------------------------------------------------------
def _removed_by_rules(page: FetchResult, rules: Sequence[dict]) -> dict | None:
    """The first host rule (status list, text in the body, words in the final URL) the answer meets."""
    text = page.body.decode("utf-8", errors="replace").lower() if page.body else ""
    for rule in rules:
        statuses, phrase, in_url = rule.get("status") or [], rule.get("text"), rule.get("final_url_contains")
        if not (statuses or phrase or in_url):
            continue
        if statuses and page.status not in statuses:
            continue
        if phrase and phrase.lower() not in text:
            continue
        if in_url and in_url not in page.final_url:
            continue
        return rule
    return None


def _fetch(fetcher: Fetches, url: str, kind: str) -> FetchResult:
    result = fetcher.fetch(url)
    metrics.RECHECK_FETCH_SECONDS.labels(kind=kind).observe(result.elapsed_s)
    if result.failure is not None:
        metrics.RECHECK_FETCH_FAILURES.labels(kind=kind, reason=result.failure.value).inc()
    return result


def _describe(page: FetchResult) -> dict[str, Any]:
    detail: dict[str, Any] = {"status": page.status, "final_url": page.final_url, "fetch_s": round(page.elapsed_s, 3)}
    if page.redirects:
        detail["redirects"] = len(page.redirects)
    if page.failure is not None:
        detail["error"] = page.failure.value
        detail["reason"] = page.detail[:300]
    return detail


def check_target(target: Any, fetcher: Fetches, options: RecheckOptions, max_bytes: int) -> Verdict:
    """Fetch one takedown's page (and images) and say what is there. Never raises for the host's doing."""
    reference = Reference.of(target)
    page = _fetch(fetcher, target.page_url, "page")
    detail = _describe(page)
    media_url = target.media_url if target.media_url and target.media_url != target.page_url else None
    media_hit = _check_media_url(media_url, fetcher, reference, options, max_bytes, detail)
    if media_hit is not None:
        return Verdict("still_up", {**detail, **media_hit, "where": "media_url"})
    if page.failure is FetchFailure.DNS_FAILURE:
        return Verdict("dns_failure", detail)
    if (rule := _removed_by_rules(page, target.removal_rules)) is not None:
        return Verdict("gone", {**detail, "rule": {k: v for k, v in rule.items() if v}})
    if page.status in GONE_STATUSES:
        return Verdict("gone", detail)
    if page.failure is not None:
        return Verdict("error", detail)
    if reference.empty:
        return Verdict("error", {**detail, "error": "no_reference", "reason": "the takedown has no media hash"})
    return _look_on_page(page, fetcher, reference, options, max_bytes, detail)


def _check_media_url(media_url: str | None, fetcher: Fetches, reference: Reference, options: RecheckOptions,
                     max_bytes: int, detail: dict[str, Any]) -> dict[str, Any] | None:
    if media_url is None or reference.empty:
        return None
    media = _fetch(fetcher, media_url, "image")
    detail["media_url_status"] = media.status
    if media.failure is None:
        return same_content(reference, media.body, media.content_type, options, max_bytes)
    detail["media_url_error"] = media.failure.value
    return None


def _look_on_page(page: FetchResult, fetcher: Fetches, reference: Reference, options: RecheckOptions,
                  max_bytes: int, detail: dict[str, Any]) -> Verdict:
    if not any(page.content_type.startswith(kind) for kind in HTML_TYPES):
        found = same_content(reference, page.body, page.content_type, options, max_bytes)
        return Verdict("still_up", {**detail, **found, "where": "page"}) if found else \
            Verdict("changed", {**detail, "images_checked": 1})
    images = page_images(page.body, page.final_url, options.max_images)
    failed = 0
    for url in images:
        image = _fetch(fetcher, url, "image")
        if image.failure is not None:
            failed += 1
            continue
        if (found := same_content(reference, image.body, image.content_type, options, max_bytes)) is not None:
            return Verdict("still_up", {**detail, **found, "where": "image", "image_url": url,
                                        "images_checked": images.index(url) + 1})
    return Verdict("changed", {**detail, "images_checked": len(images), "images_failed": failed})


# -- many checks ---------------------------------------------------------------------------------
def run_checks(targets: Iterable[Any], check: Callable[[Any], Verdict], workers: int, per_host: int,
               stop: threading.Event | None = None) -> Iterator[tuple[Any, Verdict]]:
    """Check every target on ``workers`` threads, at most ``per_host`` at a time per host key.

    Results come back as they finish. A host's further targets wait in its own queue, never in
    the pool, so a slow host delays only itself. Once ``stop`` is set nothing new starts; what
    runs finishes and is yielded, so no check in flight is lost.
    """
    queues: dict[str, collections.deque] = collections.defaultdict(collections.deque)
    for target in targets:
        queues[target.host_key].append(target)
    running: collections.Counter = collections.Counter()
    ready, waiting = collections.deque(queues), set(queues)  # hosts that may start one more
    futures: dict[Future, Any] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="recheck") as pool:
        while True:
            while len(futures) < workers and ready and not (stop is not None and stop.is_set()):
                host = ready.popleft()
                waiting.discard(host)
                target = queues[host].popleft()
                running[host] += 1
                futures[pool.submit(_safe_check, check, target)] = target
                if queues[host] and running[host] < per_host:
                    ready.append(host)
                    waiting.add(host)
            if not futures:
                return
            done, _pending = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                target = futures.pop(future)
                host = target.host_key
                running[host] -= 1
                if queues[host] and host not in waiting:
                    ready.append(host)
                    waiting.add(host)
                yield target, future.result()


def _safe_check(check: Callable[[Any], Verdict], target: Any) -> Verdict:
    try:
        return check(target)
    except Exception as error:  # a bug on one page must not end the batch: an error outcome
        log.exception("re-check of takedown %s failed", target.takedown_id)
        return Verdict("error", {"error": "internal", "reason": f"{type(error).__name__}: {error}"[:300]})


def check_id_for(target: Any) -> str:
    """The same id for the same due slot of the same takedown, in any process (idempotent records)."""
    due_at = getattr(target, "due_at", None)
    if isinstance(due_at, dt.datetime):
        return f"rc-{target.takedown_id}-{due_at.astimezone(dt.UTC):%Y%m%dT%H%M%S%f}"
    return f"rc-{target.takedown_id}-{uuid.uuid4().hex[:16]}"


# Checks recorded in one transaction when the store is ``batched`` (``record_many``): one commit per
# group instead of per URL. A killed service loses at most one group, which stays due.
RECORD_GROUP = 50
RECORD_GROUP_S = 1.0  # ...or what a second brought, so slow hosts' results are not held back (nor lost)
Recorded = tuple[Any, str, Verdict, dt.datetime]  # target, check id, verdict, checked at


class RecheckStore(Protocol):
    """What a run needs of the takedown records (services.takedowns through a Workspace)."""

    def due(self, now: dt.datetime, limit: int) -> list[Any]: ...

    def record(self, target: Any, check_id: str, verdict: Verdict, checked_at: dt.datetime) -> Any: ...


class TakedownRecords:
    """:class:`RecheckStore` over the case database (T1's services.takedowns)."""

    def __init__(self, work: Any):
        self.work = work

    def due(self, now: dt.datetime, limit: int) -> list[Any]:
        from mimamori.services.takedowns import due_rechecks

        return due_rechecks(self.work, now=now, limit=limit)

    def record(self, target: Any, check_id: str, verdict: Verdict, checked_at: dt.datetime) -> Any:
        from mimamori.services.takedowns import record_recheck

        return record_recheck(self.work, target.takedown_id, check_id, verdict.outcome, verdict.detail, checked_at)

    batched = True  # services.takedowns.record_rechecks: a group of checks in one transaction

    def record_many(self, items: list[Recorded]) -> list[Any]:
        """Several checks in one transaction: all of them, or (on an error) none."""
        from mimamori.services import takedowns

        return takedowns.record_rechecks(self.work, [(t.takedown_id, check_id, v.outcome, v.detail, at)
                                                     for t, check_id, v, at in items])


def run_once(store: RecheckStore, check: Callable[[Any], Verdict], options: RecheckOptions,
             clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
             stop: threading.Event | None = None) -> RunSummary:
    """Check everything due now, batch by batch, until nothing is due (or ``stop`` is set)."""
    summary, began, attempted, unrecorded = RunSummary(), time.monotonic(), set(), set()
    now = clock()
    while not (stop is not None and stop.is_set()):
        # A recorded check is due again only an interval later; what could not be recorded stays
        # due (and is skipped for the rest of this pass), so read that many more.
        batch = [t for t in store.due(now, options.batch + len(unrecorded)) if t.takedown_id not in attempted]
        if not batch:
            break
        batch = batch[: options.batch]
        attempted.update(t.takedown_id for t in batch)
        group: list[Recorded] = []
        group_began = time.monotonic()
        for target, verdict in run_checks(batch, check, options.workers, options.per_host, stop):
            group.append((target, check_id_for(target), verdict, clock()))
            if len(group) >= RECORD_GROUP or time.monotonic() - group_began >= RECORD_GROUP_S:
                unrecorded |= _record_group(store, group, summary)
                group, group_began = [], time.monotonic()
        unrecorded |= _record_group(store, group, summary)
    summary.elapsed_s = time.monotonic() - began
    metrics.RECHECK_LAST_PASS.set(time.time())
    return summary


def _record_group(store: RecheckStore, group: list[Recorded], summary: RunSummary) -> set[int]:
    """Record the group (in one transaction if the store can); the ids the database did not take."""
    if not group:
        return set()
    results: list[Any] | None = None
    if getattr(store, "batched", False) and len(group) > 1:
        try:
            results = store.record_many(group)  # type: ignore[attr-defined]
        except Exception:  # rolled back whole; one bad check must not hold the others back: one by one
            log.warning("recording %d re-checks at once failed; recording them one by one", len(group))
    failed = set()
    for index, (target, check_id, verdict, checked_at) in enumerate(group):
        summary.checked += 1
        summary.outcomes[verdict.outcome] += 1
        try:
            result = results[index] if results is not None else store.record(target, check_id, verdict, checked_at)
        except Exception:  # the database, not the host: counted, the check stays due for the next pass
            log.exception("recording the re-check of takedown %s failed", target.takedown_id)
            summary.record_errors += 1
            metrics.RECHECK_RECORD_ERRORS.inc()
            failed.add(target.takedown_id)
            continue
        _count(result, target, verdict, summary)
    return failed


def _count(result: Any, target: Any, verdict: Verdict, summary: RunSummary) -> None:
    if getattr(result, "repeat", False):
        summary.repeats += 1
        return
    metrics.RECHECK_OUTCOMES.labels(outcome=verdict.outcome).inc()
    if getattr(result, "transition_id", None) is not None:
        summary.transitions += 1
    if getattr(result, "reappeared", False):
        summary.reappeared.append(target.takedown_id)
        metrics.TAKEDOWN_REAPPEARANCES.inc()
        log.warning("takedown %s: removed content is back", target.takedown_id)  # no URL in logs: it names content


# -- wiring ----------------------------------------------------------------------------------------
def options_from(config: Any) -> RecheckOptions:
    """The run's options from ``Settings.rechecks``."""
    return RecheckOptions(workers=config.workers, per_host=config.per_host, max_images=config.max_images,
                          phash_distance=config.phash_distance, pdq_distance=config.pdq_distance, batch=config.batch)


def fetcher_from(config: Any) -> Any:
    """The SSRF-safe fetcher ``Settings.rechecks`` describes (allow_networks: tests' local servers only)."""
    from mimamori.media.addresses import AddressPolicy
    from mimamori.media.fetcher import Fetcher, FetchLimits

    limits = FetchLimits(max_bytes=config.max_bytes, timeout_s=config.timeout_s,
                         connect_timeout_s=config.connect_timeout_s, max_redirects=config.max_redirects)
    if config.allow_networks:
        log.warning("re-checks may fetch from the non-public networks %s (rechecks.allow_networks: tests only)",
                    ", ".join(config.allow_networks))
    return Fetcher(limits, policy=AddressPolicy.allowing(config.allow_networks), user_agent=config.user_agent,
                   proxy=config.proxy)


def checker(fetcher: Fetches, options: RecheckOptions, max_bytes: int) -> Callable[[Any], Verdict]:
    return lambda target: check_target(target, fetcher, options, max_bytes)


def recheck_due(work: Any, *, fetcher: Fetches | None = None, clock: Callable[[], dt.datetime] | None = None,
                stop: threading.Event | None = None) -> RunSummary:
    """One pass over every due takedown of ``work``'s case database (``mimamori rechecks run-once``)."""
    config = work.settings.rechecks
    options = options_from(config)
    check = checker(fetcher or fetcher_from(config), options, config.max_bytes)
    return run_once(TakedownRecords(work), check, options, clock or (lambda: dt.datetime.now(dt.UTC)), stop)


def prepare_metrics() -> None:
    """Every outcome's and fetch kind's series at 0 from the start, so rates and panels exist before the first check."""
    from mimamori.stores.takedowns import CHECK_OUTCOMES

    for outcome in CHECK_OUTCOMES:
        metrics.RECHECK_OUTCOMES.labels(outcome=outcome)
    for kind in ("page", "image"):
        metrics.RECHECK_FETCH_SECONDS.labels(kind=kind)
