"""Hosts that misbehave during a re-check: each gives a recorded outcome and none holds up the others.

Issue 19's faults, end to end: real local HTTP and HTTPS servers, the SSRF-safe fetcher with its
allow-list for 127.0.0.1, the re-check pass of ``mimamori rechecks run-once`` and the takedown
records in a SQLite case database. A slow host, a redirect loop, an endless body (the "5 GB"
answer), a TLS error, a page with a different image, a name with no address, and a page that
still shows the image.
"""

from __future__ import annotations

import hashlib
import io
import time

import numpy as np
from PIL import Image
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.media.addresses import AddressPolicy
from mimamori.media.fetcher import Fetcher, FetchLimits
from mimamori.media.phash import perceptual_hash
from mimamori.services.audit import Actor
from mimamori.services.cases import create_case
from mimamori.services.rechecks import recheck_due
from mimamori.services.takedowns import create_takedown
from mimamori.services.workspace import Workspace
from mimamori.stores.takedowns import Takedown, TakedownCheck
from tests.support.http_server import LocalServer, Route, make_tls_files

ADMIN = Actor("test-admin", "admin")


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((160, 120), Image.BILINEAR).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_each_misbehaving_host_is_a_recorded_outcome_and_the_others_do_not_wait(tmp_path):
    image, other = jpeg(1), jpeg(2)
    cert, key, _ca = make_tls_files(tmp_path, "tls-broken.test", self_signed=True)
    settings = load_settings("local")
    settings.database.url = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
    settings.rechecks.workers, settings.rechecks.per_host = 4, 1
    work = Workspace(settings)
    create_case(work, ADMIN, "c1", "Client")
    with LocalServer() as site, LocalServer(tls=(cert, key)) as tls_site:
        site.routes["/img.jpg"] = Route(body=image, content_type="image/jpeg")
        site.routes["/other.jpg"] = Route(body=other, content_type="image/jpeg")
        site.routes["/up"] = Route(body=b'<img src="/img.jpg">')
        site.routes["/slow"] = Route(delay_s=30, body=b'<img src="/img.jpg">')
        site.routes["/loop"] = Route(location="/loop2")
        site.routes["/loop2"] = Route(location="/loop")
        site.routes["/huge"] = Route(endless=True, content_type="image/jpeg")
        site.routes["/different"] = Route(body=b'<img src="/other.jpg">')
        tls_site.routes["/p"] = Route(body=b'<img src="/img.jpg">')
        pages = {  # host name -> (URL, expected outcome, fetch error)
            "slow-host.test": (site.url("/slow", "slow-host.test"), "error", "timeout"),
            "loop-host.test": (site.url("/loop", "loop-host.test"), "error", "redirect_loop"),
            "huge-host.test": (site.url("/huge", "huge-host.test"), "error", "too_large"),
            "tls-broken.test": (tls_site.url("/p", "tls-broken.test"), "error", "tls_error"),
            "other-host.test": (site.url("/different", "other-host.test"), "changed", None),
            "nxdomain-host.test": (site.url("/up", "nxdomain-host.test"), "dns_failure", "dns_failure"),
            "up-host.test": (site.url("/up", "up-host.test"), "still_up", None),
            "up2-host.test": (site.url("/up", "up2-host.test"), "still_up", None),
        }
        phash = perceptual_hash(Image.open(io.BytesIO(image)).convert("RGB")).hex()
        ids = {create_takedown(work, ADMIN, "c1", url, media_sha256=hashlib.sha256(image).hexdigest(),
                               media_phash=phash).id: host for host, (url, _, _) in pages.items()}
        fetcher = Fetcher(FetchLimits(max_bytes=2 * 1024 * 1024, timeout_s=3.0),
                          policy=AddressPolicy.allowing(["127.0.0.1/32"]),
                          resolver=lambda host, port: [] if host.startswith("nxdomain") else ["127.0.0.1"])
        began = time.monotonic()
        summary = recheck_due(work, fetcher=fetcher)
        elapsed = time.monotonic() - began
    assert summary.checked == len(pages) and summary.record_errors == 0
    assert elapsed < 15, f"a pass over {len(pages)} hosts took {elapsed:.1f} s"
    with work.sessions() as session:
        checks = {ids[c.takedown_id]: c for c in session.scalars(select(TakedownCheck))}
        states = {ids[t.id]: t.state for t in session.scalars(select(Takedown))}
    for host, (_url, outcome, error) in pages.items():
        assert checks[host].outcome == outcome, (host, checks[host].detail)
        assert checks[host].detail.get("error") == error, (host, checks[host].detail)
    assert checks["huge-host.test"].detail["fetch_s"] < 3.5  # cut at 2 MiB, not read to the end
    assert set(states.values()) == {"draft"}  # none of these is evidence of removal (one DNS failure is not)
    # The healthy hosts were recorded before the slow one had given up.
    assert max(checks[h].recorded_at for h in ("up-host.test", "up2-host.test", "other-host.test")) \
        < checks["slow-host.test"].recorded_at
