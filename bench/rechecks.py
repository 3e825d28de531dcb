"""Re-checks of 10,000 takedown URLs on a local server: time and peak memory (issue 19, acceptance 4).

A child process serves 10,000 pages over HTTP on 127.0.0.1 (tests/support/http_server.py), under
50 host names that the fetcher's injected resolver maps to 127.0.0.1 (and a few that do not
resolve), with a fixed mix of outcomes: the same image on the page (by SHA-256, or re-encoded:
pHash), 404 and 410, a host's removed-content page, a different image, slow answers (1 s), answers
slower than the fetch limit (timeouts), no DNS, redirect loops and endless bodies (cut at the size
limit). A SQLite case database in a temporary folder (migrated as in production) holds one takedown
per URL; the measured part is one ``recheck_due`` pass, exactly as ``mimamori rechecks run-once``
does it: ``due_rechecks`` batches, the fetches on a bounded pool (``--workers``, ``--per-host``),
one ``record_recheck`` transaction per URL. Then every outcome is compared with the plan.

Run:

    .venv/bin/python bench/rechecks.py --urls 10000 --workers 16 --per-host 4

Target (issue 19): under 10 minutes; peak RSS of the checking process reported (the server runs in
its own process).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import hashlib
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# (share of the URLs, what the page does, the outcome the re-check must record)
MIX = (
    (0.40, "same", "still_up"), (0.08, "recoded", "still_up"), (0.08, "slow", "still_up"),
    (0.15, "404", "gone"), (0.05, "410", "gone"), (0.05, "removed_page", "gone"),
    (0.10, "other", "changed"), (0.03, "timeout", "error"), (0.02, "no_dns", "dns_failure"),
    (0.02, "loop", "error"), (0.02, "endless", "error"),
)
HOSTS = 50
SLOW_S, TIMEOUT_S, FETCH_TIMEOUT_S = 1.0, 6.0, 3.0
RULES_HOST = "rules.bench.test"


def plan(urls: int, seed: int = 19) -> list[str]:
    """The kind of each URL, the same in the server and the checker."""
    kinds = [kind for share, kind, _ in MIX for _ in range(round(share * urls))]
    kinds = (kinds + ["same"] * urls)[:urls]
    random.Random(seed).shuffle(kinds)
    return kinds


def host_of(i: int, kind: str) -> str:
    if kind == "no_dns":
        return f"h{i % HOSTS}.gone.bench.test"
    return RULES_HOST if kind == "removed_page" else f"h{i % HOSTS}.bench.test"


def images() -> dict[str, bytes]:
    base = Image.effect_noise((16, 16), 60).convert("RGB").resize((320, 240), Image.BILINEAR)
    other = Image.effect_noise((16, 16), 90).convert("RGB").resize((320, 240), Image.BICUBIC).rotate(90)

    def jpeg(image: Image.Image, quality: int) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return buffer.getvalue()

    return {"same": jpeg(base, 90), "recoded": jpeg(base, 45), "other": jpeg(other, 90)}


# -- the server (child process) ----------------------------------------------------------------
def serve(urls: int, seed: int) -> None:
    from tests.support.http_server import LocalServer, Route

    pictures = images()
    with LocalServer() as site:
        for name, data in pictures.items():
            site.routes[f"/i/{name}.jpg"] = Route(body=data, content_type="image/jpeg")
        for i, kind in enumerate(plan(urls, seed)):
            path = f"/p/{i}"
            page = {"same": "same", "recoded": "recoded", "slow": "same", "other": "other"}.get(kind)
            if page:
                body = f'<html><body><img src="/i/{page}.jpg" alt=""></body></html>'.encode()
                site.routes[path] = Route(body=body, delay_s=SLOW_S if kind == "slow" else 0.0)
            elif kind == "410":
                site.routes[path] = Route(status=410, body=b"gone")
            elif kind == "removed_page":
                site.routes[path] = Route(body=b"<h1>This content has been removed by the host.</h1>")
            elif kind == "timeout":
                site.routes[path] = Route(delay_s=TIMEOUT_S, body=b"late")
            elif kind == "loop":
                site.routes[path] = Route(location=path + "/again")
                site.routes[path + "/again"] = Route(location=path)
            elif kind == "endless":
                site.routes[path] = Route(endless=True, content_type="image/jpeg")
        print(site.port, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


# -- the checker ---------------------------------------------------------------------------------
def seed_database(work, urls: int, port: int, kinds: list[str], reference: bytes) -> None:
    from mimamori.media.phash import perceptual_hash
    from mimamori.services import hosts
    from mimamori.services.audit import Actor
    from mimamori.services.cases import create_case
    from mimamori.stores.takedowns import Takedown

    admin = Actor("bench", "admin")
    create_case(work, admin, "bench", "Bench")
    hosts.import_hosts(work, admin, f"""
hosts:
  - key: bench-rules
    operator: Rules Host
    domains: [{RULES_HOST}]
    removal_rules: [{{text: "content has been removed"}}]
""")
    sha = hashlib.sha256(reference).hexdigest()
    phash = perceptual_hash(Image.open(io.BytesIO(reference)).convert("RGB")).hex()
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    rows = []
    for i, kind in enumerate(kinds):
        host = host_of(i, kind)
        rows.append({"case_id": "bench", "page_url": f"http://{host}:{port}/p/{i}", "media_sha256": sha,
                     "media_phash": phash, "host_key": "bench-rules" if host == RULES_HOST else f"unknown:{host}",
                     "registrable_domain": host, "state": "draft", "escalation_step": 0, "dns_failures": 0,
                     "found_at": now, "created_at": now, "created_by": "bench", "updated_at": now,
                     "next_check_at": now})
    with work.sessions.begin() as session:
        session.execute(Takedown.__table__.insert(), rows)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_all(args: argparse.Namespace, port: int, kinds: list[str]) -> dict:
    from sqlalchemy import select

    from mimamori.core.config import load_settings
    from mimamori.media.addresses import AddressPolicy
    from mimamori.media.fetcher import Fetcher, FetchLimits
    from mimamori.services.rechecks import recheck_due
    from mimamori.services.workspace import Workspace
    from mimamori.stores.takedowns import Takedown, TakedownCheck

    settings = load_settings("local")
    folder = tempfile.mkdtemp(prefix="mimamori-bench-rechecks-")
    settings.database.url = f"sqlite:///{folder}/cases.sqlite3"
    settings.rechecks.workers, settings.rechecks.per_host = args.workers, args.per_host
    work = Workspace(settings)
    seed_database(work, args.urls, port, kinds, images()["same"])
    fetcher = Fetcher(FetchLimits(max_bytes=args.max_bytes, timeout_s=FETCH_TIMEOUT_S),
                      policy=AddressPolicy.allowing(["127.0.0.1/32"]),
                      resolver=lambda host, _port: [] if ".gone." in host else ["127.0.0.1"])
    before = rss_mib()
    began = time.monotonic()
    summary = recheck_due(work, fetcher=fetcher)
    elapsed = time.monotonic() - began
    with work.sessions() as session:  # the URL's index is the last part of its path
        recorded = {int(url.rsplit("/", 1)[1]): outcome for url, outcome in session.execute(
            select(Takedown.page_url, TakedownCheck.outcome).join(Takedown, Takedown.id == TakedownCheck.takedown_id))}
    expected = {kind: outcome for _, kind, outcome in MIX}
    wrong = collections.Counter((kinds[i], outcome) for i, outcome in recorded.items() if expected[kinds[i]] != outcome)
    return {"urls": args.urls, "workers": args.workers, "per_host": args.per_host, "hosts": HOSTS,
            "elapsed_s": round(elapsed, 1), "urls_per_s": round(summary.checked / elapsed, 1),
            "checked": summary.checked, "recorded": len(recorded), "outcomes": dict(summary.outcomes),
            "transitions": summary.transitions, "wrong": {f"{k}->{o}": n for (k, o), n in wrong.items()},
            "rss_before_mib": round(before, 1), "peak_rss_mib": round(rss_mib(), 1),
            "cpu_s": round(sum(os.times()[:2]), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=16)  # rechecks.workers
    parser.add_argument("--per-host", type=int, default=4)
    parser.add_argument("--max-bytes", type=int, default=20 * 1024 * 1024)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.serve:
        serve(args.urls, args.seed)
        return 0
    kinds = plan(args.urls, args.seed)
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--urls", str(args.urls), "--seed",
                               str(args.seed)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        result = check_all(args, port, kinds)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    print(json.dumps(result, indent=2))
    return 0 if not result["wrong"] and result["recorded"] == args.urls else 1


if __name__ == "__main__":
    sys.exit(main())
