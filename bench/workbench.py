"""The review workbench under load: the queue page and a decision's round trip, over HTTP.

Seeds a case database (SQLite in a temporary folder, migrated as in production) with
``--cases`` cases of ``--per-case`` pending matches each (10,000 in 200 cases by default),
each case with a consent record and an enrolled photo, and one reviewer assigned to every
case. Then it serves the real FastAPI app (mimamori.api.app.create_app, the workbench
included) with uvicorn on 127.0.0.1, signs the reviewer in through the services
(password, then a TOTP code), and times with a plain HTTP client:

- the queue page (``GET /queue``, the first page of the reviewer's queue), median and p95;
- a decision's round trip: the decision's form POST and the queue page it leads to.

What is not real: the face store. The queue reads the found faces and their sightings from
Milvus by id, two batched queries per page whatever its size; here a dict-backed fake answers
them (BenchFaces), so the numbers are the workbench's own (database, services, templates,
HTTP), not Milvus's. Images are not fetched: the page's HTML is what is timed.

    .venv/bin/python bench/workbench.py [--cases 200] [--per-case 50] [--requests 50]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import pyotp
import uvicorn
from sqlalchemy import func, insert, select

from mimamori.api.app import create_app
from mimamori.core.config import load_settings
from mimamori.services import users
from mimamori.services.audit import Actor
from mimamori.services.workspace import Workspace
from mimamori.stack.process import free_port
from mimamori.stores.cases import Case, CaseAssignment, Consent, EnrolledPhoto, Match, MatchDecision
from mimamori.stores.face_search import Sighting, StoredFace
from tests.support.memory import MemoryObjects

REVIEWER, PASSWORD = "bench-reviewer", "a long bench password 42"
MODEL_VERSION = "dlib_resnet_v1"


class BenchFaces:
    """The face store's two reads the queue makes, answered from dicts (see the module's docstring)."""

    def __init__(self):
        self.faces: dict[int, StoredFace] = {}
        self.sightings: dict[str, list[Sighting]] = {}

    def faces_by_id(self, face_ids, collection=None) -> dict[int, StoredFace]:
        return {int(i): self.faces[int(i)] for i in face_ids if int(i) in self.faces}

    def sightings_of(self, media_sha256) -> dict[str, list[Sighting]]:
        return {sha: list(self.sightings.get(sha, [])) for sha in media_sha256}


class BenchWorkspace(Workspace):
    def __init__(self, settings, faces: BenchFaces, objects: MemoryObjects):
        super().__init__(settings)
        self.bench_faces, self.bench_objects = faces, objects

    @property
    def searcher(self) -> BenchFaces:  # type: ignore[override]
        return self.bench_faces

    @property
    def objects(self) -> MemoryObjects:  # type: ignore[override]
        return self.bench_objects


def crop_jpeg(seed: int) -> bytes:
    import io

    from PIL import Image

    image = Image.effect_noise((160, 160), 40 + seed % 30).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def seed(work: BenchWorkspace, cases: int, per_case: int) -> int:
    """Cases, consents, enrolled photos, pending matches (some sharing media: clusters), faces, sightings."""
    rng = random.Random(18)
    now = dt.datetime.now(dt.UTC)
    buckets = work.settings.minio.buckets
    crops = [crop_jpeg(i) for i in range(16)]
    case_rows, consent_rows, photo_rows, match_rows = [], [], [], []
    face_id = 10_000_000
    for c in range(cases):
        case_id = f"case-{c:04d}"
        case_rows.append({"id": case_id, "display_name": f"Client {c:04d}", "created_by": "bench",
                          "created_at": now - dt.timedelta(days=30)})
        consent_rows.append({"case_id": case_id, "given_by": "client", "relationship_to_client": "self",
                             "given_at": now - dt.timedelta(days=30), "scope": ["search", "watchlist", "takedown"],
                             "expires_at": now + dt.timedelta(days=300), "recorded_by": "bench",
                             "recorded_at": now - dt.timedelta(days=30)})
        sha = hashlib.sha256(case_id.encode()).hexdigest()
        crop_key = f"cases/{case_id}/crops/{sha}.jpg"
        work.objects.put(buckets.references.name, crop_key, crops[c % len(crops)])
        photo_rows.append({"case_id": case_id, "sha256": sha, "object_key": f"cases/{case_id}/photos/{sha}",
                           "crop_key": crop_key, "face_id": 1_000_000 + c, "model_version": MODEL_VERSION,
                           "enrolled_by": "bench", "enrolled_at": now - dt.timedelta(days=30)})
        media = None
        for m in range(per_case):
            if media is None or rng.random() > 0.2:  # one in five shares the media of the one before
                media = hashlib.sha256(f"{case_id}/{m}".encode()).hexdigest()
                phash = f"{rng.getrandbits(64):016x}"
                url = f"https://example.test/{case_id}/{m}"
                work.bench_faces.sightings[media] = [
                    Sighting(f"scraped:{media[:12]}:{k}", f"{url}/{k}.jpg", f"{url}/page{k}", "example",
                             (now - dt.timedelta(days=2, hours=k)).isoformat(),
                             (now - dt.timedelta(days=1, hours=k)).isoformat(), "original" if k == 0 else "exact")
                    for k in range(1 + rng.randrange(3))]
            face_id += 1
            created = now - dt.timedelta(minutes=rng.randrange(60 * 24 * 14))
            work.bench_faces.faces[face_id] = StoredFace(
                face_id, media, f"https://example.test/{case_id}/{m}/0.jpg", "example",
                (created - dt.timedelta(hours=3)).isoformat(), created.isoformat(),
                {"x1": 10.0, "y1": 10.0, "x2": 150.0, "y2": 150.0}, 0.9, MODEL_VERSION, 0, f"faces/{face_id}.jpg")
            work.objects.put(buckets.crops.name, f"faces/{face_id}.jpg", crops[face_id % len(crops)])
            match_rows.append({"case_id": case_id, "face_id": face_id, "media_sha256": media,
                               "model_version": MODEL_VERSION, "similarity": round(rng.uniform(0.93, 0.99), 4),
                               "source": "stream", "status": "pending_review", "created_at": created,
                               "scraped_at": created - dt.timedelta(seconds=2), "media_phash": phash})
    with work.sessions.begin() as session:
        session.execute(insert(Case), case_rows)
        session.execute(insert(Consent), consent_rows)
        session.execute(insert(EnrolledPhoto), photo_rows)
        session.execute(insert(Match), match_rows)
        session.execute(insert(CaseAssignment), [{"case_id": row["id"], "username": REVIEWER,
                                                  "assigned_by": "bench"} for row in case_rows])
    return len(match_rows)


class Client:
    """An HTTP client that keeps cookies the way a browser does on http://127.0.0.1 (Chrome keeps
    Secure cookies on loopback; Python's cookie jar would drop them on plain http)."""

    def __init__(self, base: str):
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=60)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **options) -> httpx.Response:
        header = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = self.http.request(method, path, headers={"Cookie": header} if header else {}, **options)
        for line in response.headers.get_list("set-cookie"):
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0].strip('"')
            if not value or "max-age=0" in rest.lower():
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def post(self, path: str, form: dict) -> httpx.Response:
        return self.request("POST", path, data=form)


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if found is None:
        raise SystemExit("no csrf_token in the page:\n" + html[:2000])
    return found.group(1)


def sign_in(client: Client, password: str, secret: str) -> None:
    """The two forms a person fills in: username and password, then the TOTP code."""
    page = client.get("/login")
    answer = client.post("/login", {"username": REVIEWER, "password": password, "next": "/queue",
                                    "csrf_token": csrf(page.text)})
    if answer.status_code != 303:
        raise SystemExit(f"sign-in refused: {answer.status_code} {answer.text[:500]}")
    page = client.get("/login/code?next=/queue")
    answer = client.post("/login/code", {"code": pyotp.TOTP(secret).now(), "next": "/queue",
                                         "csrf_token": csrf(page.text)})
    if answer.status_code != 303 or "mimamori_session" not in client.cookies:
        raise SystemExit(f"the code was refused: {answer.status_code} {answer.text[:500]}")


def serve(app, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("uvicorn did not start")
        time.sleep(0.05)
    return server


def summary(name: str, seconds: list[float], target_ms: float) -> dict:
    ms = sorted(s * 1000 for s in seconds)
    median, p95 = statistics.median(ms), statistics.quantiles(ms, n=20)[18]
    verdict = "meets" if median < target_ms else "MISSES"
    print(f"{name:<34} median {median:7.1f} ms   p95 {p95:7.1f} ms   min {ms[0]:6.1f}   max {ms[-1]:7.1f}   "
          f"({len(ms)} requests; target median < {target_ms:.0f} ms: {verdict})")
    return {"median_ms": round(median, 1), "p95_ms": round(p95, 1), "requests": len(ms), "target_ms": target_ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--per-case", type=int, default=50)
    parser.add_argument("--requests", type=int, default=50, help="timed requests of each kind (after 5 warm-up)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="mimamori-bench-workbench-"))
    settings = load_settings("local")
    settings.database.url = f"sqlite:///{folder / 'cases.sqlite3'}"
    work = BenchWorkspace(settings, BenchFaces(), MemoryObjects())
    operator = Actor("bench", "operator")
    invitation = users.create_user(work, operator, REVIEWER, "reviewer")
    secret = users.begin_enrolment(work, invitation.token).secret
    users.complete_enrolment(work, invitation.token, PASSWORD, pyotp.TOTP(secret).now())
    began = time.perf_counter()
    seeded = seed(work, args.cases, args.per_case)
    print(f"seeded {seeded} pending matches in {args.cases} cases ({time.perf_counter() - began:.1f} s); "
          f"SQLite at {folder}; {platform.python_version()}, {os.cpu_count()} CPUs")

    server = serve(create_app(settings, work), free_port())
    client = Client(f"http://127.0.0.1:{server.config.port}")
    # The TOTP code of enrolment may not be used again: sign in with the next step's code.
    time.sleep(30 - time.time() % 30 + 0.5)
    sign_in(client, PASSWORD, secret)

    def timed_queue() -> tuple[float, str]:
        start = time.perf_counter()
        page = client.get("/queue")
        elapsed = time.perf_counter() - start
        if page.status_code != 200 or "/decision" not in page.text:
            raise SystemExit(f"the queue page failed: {page.status_code} {page.text[:500]}")
        return elapsed, page.text

    for _ in range(5):
        timed_queue()
    queue_times, page = [], ""
    for _ in range(args.requests):
        elapsed, page = timed_queue()
        queue_times.append(elapsed)

    decision_times = []
    for i in range(args.requests + 5):
        match_id = int(re.search(r"/matches/(\d+)/decision", page).group(1))
        start = time.perf_counter()
        answer = client.post(f"/matches/{match_id}/decision", {
            "decision": ("confirmed", "rejected", "unsure")[i % 3], "note": "bench", "back": "/queue",
            "csrf_token": csrf(page)})
        if answer.status_code != 303:
            raise SystemExit(f"the decision failed: {answer.status_code} {answer.text[:500]}")
        following = client.get(answer.headers["location"])
        elapsed = time.perf_counter() - start
        if following.status_code != 200:
            raise SystemExit(f"the queue after a decision failed: {following.status_code}")
        page = following.text
        if i >= 5:
            decision_times.append(elapsed)
    with work.sessions() as session:
        decided = session.scalar(select(func.count()).select_from(MatchDecision))
    server.should_exit = True

    shown = len(re.findall(r"/matches/\d+/decision", page))
    print(f"queue page: {shown} items shown of {seeded - decided} "
          f"pending; {len(page) / 1024:.0f} KiB of HTML")
    result = {"matches": seeded, "cases": args.cases, "decisions_recorded": decided,
              "queue_page": summary("GET /queue", queue_times, 300),
              "decision_round_trip": summary("POST decision + GET /queue", decision_times, 150)}
    print(json.dumps(result))
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
