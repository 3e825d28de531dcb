"""Re-check logic without a network: classification, page images, scheduling, resumable runs.

The fetcher is replaced by canned answers (its own tests are tests/unit/test_fetcher_policy.py
and tests/contract/test_fetcher.py); the takedown records by an in-memory store that applies
check ids once, as services.takedowns.record_recheck does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from PIL import Image

from mimamori.media.fetcher import FetchFailure, FetchResult
from mimamori.media.phash import perceptual_hash
from mimamori.services.rechecks import (
    RecheckOptions,
    Verdict,
    check_id_for,
    check_target,
    page_images,
    run_checks,
    run_once,
)

OPTIONS = RecheckOptions(workers=4, per_host=2)
MAX = 5_000_000


def jpeg(seed: int, quality: int = 90, size: int = 128) -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)  # smooth blocks: pHash is stable under re-encoding
    image = Image.fromarray(base).resize((size, size), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@dataclass(frozen=True)
class Target:
    takedown_id: int
    page_url: str
    media_url: str | None = None
    media_sha256: str | None = None
    media_phash: str | None = None
    media_pdq: str | None = None
    host_key: str = "example"
    state: str = "sent"
    interval_hours: int = 24
    removal_rules: list = field(default_factory=list)
    case_id: str | None = "c1"
    due_at: dt.datetime | None = None


def target_for(image: bytes, **extra) -> Target:
    phash = perceptual_hash(Image.open(io.BytesIO(image)).convert("RGB")).hex()
    return Target(1, "https://host.example/post/1", media_sha256=hashlib.sha256(image).hexdigest(),
                  media_phash=phash, **extra)


class Canned:
    def __init__(self, answers: dict[str, FetchResult]):
        self.answers, self.asked = answers, []

    def fetch(self, url: str) -> FetchResult:
        self.asked.append(url)
        return self.answers.get(url) or FetchResult(url, url, FetchFailure.HTTP_STATUS, "HTTP 404", 404)


def page(url: str, html: str) -> FetchResult:
    return FetchResult(url, url, status=200, content_type="text/html; charset=utf-8", body=html.encode())


def image(url: str, data: bytes) -> FetchResult:
    return FetchResult(url, url, status=200, content_type="image/jpeg", body=data)


def test_page_images_finds_announced_and_shown_images_in_order_bounded():
    html = """<html><head><meta property="og:image" content="/og.jpg">
    <meta name="twitter:image" content="https://cdn.example/tw.jpg"></head><body>
    <img src="a.jpg"><img data-src="lazy.jpg" src="data:image/gif;base64,R0lGOD">
    <img srcset="small.jpg 320w, big.jpg 1024w"><video poster="poster.jpg"></video>
    <img src="a.jpg"><img src="javascript:alert(1)"></body></html>"""
    found = page_images(html.encode(), "https://host.example/post/1", limit=20)
    assert found == ["https://host.example/og.jpg", "https://cdn.example/tw.jpg", "https://host.example/post/a.jpg",
                     "https://host.example/post/lazy.jpg", "https://host.example/post/small.jpg",
                     "https://host.example/post/big.jpg", "https://host.example/post/poster.jpg"]
    assert len(page_images(html.encode(), "https://host.example/", limit=3)) == 3
    assert page_images(b"<img src='x.jpg'<<<>>", "https://h.example/", 5) == ["https://h.example/x.jpg"]


def test_404_and_410_are_gone_and_dns_failure_is_its_own_outcome():
    data = jpeg(1)
    target = target_for(data)
    for status in (404, 410):
        fetcher = Canned({target.page_url: FetchResult(target.page_url, target.page_url, FetchFailure.HTTP_STATUS,
                                                       "", status)})
        assert check_target(target, fetcher, OPTIONS, MAX).outcome == "gone"
    dns = Canned({target.page_url: FetchResult(target.page_url, target.page_url, FetchFailure.DNS_FAILURE, "nx")})
    assert check_target(target, dns, OPTIONS, MAX).outcome == "dns_failure"


def test_a_removed_content_page_is_recognised_by_the_hosts_rules():
    data = jpeg(2)
    rules = [{"status": [200], "text": "This video has been removed"}, {"final_url_contains": "/removed"}]
    target = target_for(data, removal_rules=rules)
    fetcher = Canned({target.page_url: page(target.page_url, "<h1>This video has been REMOVED for a violation</h1>")})
    verdict = check_target(target, fetcher, OPTIONS, MAX)
    assert verdict.outcome == "gone" and verdict.detail["rule"]["text"] == "This video has been removed"
    moved = FetchResult(target.page_url, "https://host.example/removed?id=1", status=200, content_type="text/html",
                        body=b"<p>sorry</p>", redirects=["https://host.example/removed?id=1"])
    assert check_target(target, Canned({target.page_url: moved}), OPTIONS, MAX).outcome == "gone"


def test_the_same_image_on_the_page_is_still_up_by_sha256_or_phash():
    data = jpeg(3)
    target = target_for(data)
    html = '<img src="/i/other.jpg"><img src="/i/it.jpg">'
    same = Canned({target.page_url: page(target.page_url, html),
                   "https://host.example/i/other.jpg": image("https://host.example/i/other.jpg", jpeg(99)),
                   "https://host.example/i/it.jpg": image("https://host.example/i/it.jpg", data)})
    verdict = check_target(target, same, OPTIONS, MAX)
    assert verdict.outcome == "still_up" and verdict.detail["matched"] == "sha256"
    assert verdict.detail["image_url"] == "https://host.example/i/it.jpg" and verdict.detail["images_checked"] == 2
    recoded = Canned({target.page_url: page(target.page_url, '<img src="/i/it.jpg">'),
                      "https://host.example/i/it.jpg": image("https://host.example/i/it.jpg", jpeg(3, quality=40))})
    verdict = check_target(target, recoded, OPTIONS, MAX)
    assert verdict.outcome == "still_up" and verdict.detail["matched"] == "phash"
    assert verdict.detail["distance"] <= OPTIONS.phash_distance


def test_a_page_with_a_different_image_is_changed():
    target = target_for(jpeg(4))
    fetcher = Canned({target.page_url: page(target.page_url, '<img src="/x.jpg"><img src="/broken.jpg">'),
                      "https://host.example/x.jpg": image("https://host.example/x.jpg", jpeg(5)),
                      "https://host.example/broken.jpg": image("https://host.example/broken.jpg", b"not a jpeg")})
    verdict = check_target(target, fetcher, OPTIONS, MAX)
    assert verdict == Verdict("changed", {**verdict.detail, "images_checked": 2, "images_failed": 0})


def test_the_media_url_serving_the_image_keeps_it_up_even_when_the_page_is_gone():
    data = jpeg(6)
    target = replace(target_for(data), media_url="https://cdn.example/m/6.jpg")
    fetcher = Canned({target.media_url: image(target.media_url, data)})  # the page answers 404
    verdict = check_target(target, fetcher, OPTIONS, MAX)
    assert verdict.outcome == "still_up" and verdict.detail["where"] == "media_url"
    assert check_target(target, Canned({}), OPTIONS, MAX).outcome == "gone"


def test_an_image_url_as_the_page_is_compared_directly():
    data = jpeg(7)
    target = target_for(data)
    assert check_target(target, Canned({target.page_url: image(target.page_url, data)}), OPTIONS, MAX).outcome \
        == "still_up"


@pytest.mark.parametrize("failure", [FetchFailure.TIMEOUT, FetchFailure.TLS_ERROR, FetchFailure.TOO_LARGE,
                                     FetchFailure.REDIRECT_LOOP, FetchFailure.REFUSED_ADDRESS,
                                     FetchFailure.CONNECT_ERROR])
def test_a_host_that_cannot_be_judged_is_an_error_with_its_reason(failure):
    target = target_for(jpeg(8))
    fetcher = Canned({target.page_url: FetchResult(target.page_url, target.page_url, failure, "why")})
    verdict = check_target(target, fetcher, OPTIONS, MAX)
    assert verdict.outcome == "error" and verdict.detail["error"] == failure.value
    server_error = FetchResult(target.page_url, target.page_url, FetchFailure.HTTP_STATUS, "HTTP 503", 503)
    assert check_target(target, Canned({target.page_url: server_error}), OPTIONS, MAX).outcome == "error"


def test_a_slow_host_holds_only_its_own_slots():
    slow = [Target(i, f"https://slow.example/{i}", host_key="slow") for i in range(4)]
    fast = [Target(100 + i, f"https://fast.example/{i}", host_key="fast") for i in range(20)]
    finished, running, peak = [], {"slow": 0, "fast": 0}, {"slow": 0, "fast": 0}
    lock = threading.Lock()

    def check(target):
        with lock:
            running[target.host_key] += 1
            peak[target.host_key] = max(peak[target.host_key], running[target.host_key])
        time.sleep(0.4 if target.host_key == "slow" else 0.01)
        with lock:
            running[target.host_key] -= 1
        return Verdict("changed")

    for target, _verdict in run_checks(slow + fast, check, workers=4, per_host=2):
        finished.append(target.host_key)
    assert peak == {"slow": 2, "fast": 2}
    assert finished.index("slow") > finished.index("fast") + 10  # the fast host went on while slow ones ran
    assert sorted(finished) == sorted(t.host_key for t in slow + fast)


def test_a_check_that_raises_is_an_error_outcome_and_the_batch_goes_on():
    targets = [Target(i, f"https://h.example/{i}") for i in range(3)]

    def check(target):
        if target.takedown_id == 1:
            raise RuntimeError("parser bug")
        return Verdict("gone")

    outcomes = {t.takedown_id: v.outcome for t, v in run_checks(targets, check, 2, 2)}
    assert outcomes == {0: "gone", 1: "error", 2: "gone"}


class MemoryStore:
    """Due targets and recorded checks, applying each check id once (as record_recheck does)."""

    def __init__(self, targets):
        self.targets = {t.takedown_id: t for t in targets}
        self.checks: dict[str, tuple[int, str]] = {}
        self.applied: list[tuple[int, str]] = []

    def due(self, now, limit):
        return sorted((t for t in self.targets.values() if t.due_at <= now), key=lambda t: t.due_at)[:limit]

    def record(self, target, check_id, verdict, checked_at):
        if check_id in self.checks:
            return type("R", (), {"repeat": True, "transition_id": None, "reappeared": False})()
        self.checks[check_id] = (target.takedown_id, verdict.outcome)
        self.applied.append((target.takedown_id, verdict.outcome))
        self.targets[target.takedown_id] = replace(target, due_at=checked_at + dt.timedelta(hours=24))
        return type("R", (), {"repeat": False, "transition_id": 1, "reappeared": False})()


def test_a_stopped_run_records_what_was_in_flight_and_the_next_run_does_the_rest_once():
    start = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    targets = [Target(i, f"https://h{i % 3}.example/{i}", host_key=f"h{i % 3}", due_at=start - dt.timedelta(hours=1))
               for i in range(30)]
    store, stop = MemoryStore(targets), threading.Event()

    def check(target):
        time.sleep(0.02)
        if len(store.applied) >= 7:
            stop.set()  # SIGTERM arrives mid-run
        return Verdict("gone")

    options = RecheckOptions(workers=3, per_host=1, batch=10)
    first = run_once(store, check, options, clock=lambda: start, stop=stop)
    assert 7 <= first.checked < 30 and first.record_errors == 0
    second = run_once(store, check, options, clock=lambda: start)
    assert first.checked + second.checked == 30
    assert sorted(t for t, _ in store.applied) == list(range(30))  # each once, none lost


def test_check_ids_are_the_same_for_the_same_due_slot_so_a_second_service_repeats_nothing():
    due = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
    target = Target(5, "https://h.example/5", due_at=due)
    assert check_id_for(target) == check_id_for(replace(target)) == "rc-5-20261201T093000000000"
    assert check_id_for(replace(target, due_at=due + dt.timedelta(days=1))) != check_id_for(target)
    store = MemoryStore([target])
    for _ in range(2):  # two services that read the same due slot
        store.record(target, check_id_for(target), Verdict("gone"), due)
    assert store.applied == [(5, "gone")]


def test_a_pdq_hash_alone_finds_a_re_encoded_copy_and_misses_another_image():
    from mimamori.media.pdq import pdq_hash

    def photo(seed: int, quality: int) -> bytes:
        rng = np.random.default_rng(seed)
        texture = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).resize((256, 192), Image.BICUBIC)
        buffer = io.BytesIO()
        texture.save(buffer, "JPEG", quality=quality)
        return buffer.getvalue()

    original = photo(12, 92)
    reference = pdq_hash(Image.open(io.BytesIO(original)).convert("RGB"))
    assert reference.quality >= OPTIONS.pdq_min_quality
    target = Target(1, "https://host.example/p", media_pdq=reference.hex)  # no SHA-256, no pHash
    for body, outcome in ((photo(12, 40), "still_up"), (photo(13, 92), "changed")):
        fetcher = Canned({target.page_url: image(target.page_url, body)})
        verdict = check_target(target, fetcher, OPTIONS, MAX)
        assert verdict.outcome == outcome, verdict
        if outcome == "still_up":
            assert verdict.detail["matched"] == "pdq" and verdict.detail["distance"] <= OPTIONS.pdq_distance


def test_a_check_the_database_does_not_take_is_counted_stays_due_and_ends_the_pass():
    start = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    targets = [Target(i, f"https://h.example/{i}", due_at=start - dt.timedelta(hours=1)) for i in range(5)]

    class Flaky(MemoryStore):
        def record(self, target, check_id, verdict, checked_at):
            if target.takedown_id == 2:
                raise OSError("database is locked")
            return super().record(target, check_id, verdict, checked_at)

    store = Flaky(targets)
    summary = run_once(store, lambda t: Verdict("gone"), RecheckOptions(workers=2, per_host=2, batch=2),
                       clock=lambda: start)
    assert summary.checked == 5 and summary.record_errors == 1
    assert sorted(t for t, _ in store.applied) == [0, 1, 3, 4]
    assert [t.takedown_id for t in store.due(start, 10)] == [2]  # due again at the next pass


def test_a_batched_store_records_groups_and_a_failed_group_is_recorded_one_by_one():
    start = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    targets = [Target(i, f"https://h{i % 4}.example/{i}", host_key=f"h{i % 4}", due_at=start) for i in range(120)]

    class Batched(MemoryStore):
        batched = True
        groups: list[int] = []

        def record_many(self, items):
            if any(target.takedown_id == 7 for target, *_ in items):
                raise OSError("one bad row: the transaction rolls back whole")
            self.groups.append(len(items))
            return [self.record(*item) for item in items]

    store = Batched(targets)
    summary = run_once(store, lambda t: Verdict("gone"), RecheckOptions(workers=8, per_host=2, batch=120),
                       clock=lambda: start)
    assert summary.checked == 120 and summary.record_errors == 0 and summary.transitions == 120
    assert sorted(t for t, _ in store.applied) == list(range(120))  # each once
    assert store.groups == [50, 20]  # the group with takedown 7 went one by one


def test_due_slots_within_one_second_have_their_own_check_ids():
    """A check due at creation and the next one due on sending, in the same second, are two checks."""
    due = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
    target = Target(5, "https://h.example/5", due_at=due)
    assert check_id_for(replace(target, due_at=due + dt.timedelta(microseconds=300))) != check_id_for(target)
