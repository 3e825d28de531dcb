"""The workbench's answers to a security and robustness review (pages and what they call): notices
taken from the URL only when they parse, the second-opinion lane, request bodies bounded,
sessions rotated at sign-in, claims released, access ended with a user, every refusal said."""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import importlib.util
import inspect
import itertools
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyotp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import event, select
from uvicorn.logging import AccessFormatter

from mimamori.api import limits
from mimamori.api.logs import RedactSecrets
from mimamori.core import errors
from mimamori.core.config import load_settings
from mimamori.core.errors import Unauthenticated
from mimamori.services import access, keys, queue, users
from mimamori.services.audit import Actor
from mimamori.stores.cases import AuditEvent, LoginAttempt, Match
from mimamori.web.i18n import translations
from mimamori.web.render import REASONS, TEMPLATES
from mimamori.web.security import COOKIE
from tests.support.web import (
    OPERATOR,
    PASSWORD,
    add_case_with_match,
    cheap_passwords,
    code_for,
    crop_jpeg,
    csrf_of,
    make_user,
    signed_in_client,
)
from tests.support.workspace import IndexedFace, MemoryWorkspace, unit


@pytest.fixture
def work(tmp_path, monkeypatch) -> MemoryWorkspace:
    cheap_passwords(monkeypatch)
    work = MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {},
                           [IndexedFace(7, "a" * 64, unit(1, 0)), IndexedFace(8, "b" * 64, unit(0, 1))])
    for name, role in (("anna", "reviewer"), ("bob", "reviewer"), ("ada", "admin")):
        make_user(work, name, role)
    add_case_with_match(work, "c1", 7, "a" * 64, crop=crop_jpeg(), reference=crop_jpeg(seed=2),
                        assigned=("anna", "bob"))
    return work


def audit_rows(work, **where) -> list[AuditEvent]:
    with work.sessions() as session:
        rows = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    return [r for r in rows if all(getattr(r, k) == v for k, v in where.items())]


def test_the_enrolment_notice_is_parsed_in_the_route(work):
    client = signed_in_client(work, "ada")
    page = client.get("/cases/c1?done=enrolled-2-3")
    assert page.status_code == 200 and 'id="notice"' in page.text
    assert "2 photos enrolled. 3 earlier matches found." in page.text
    assert "1 photo enrolled. 1 earlier match found." in client.get("/cases/c1?done=enrolled-1-1").text
    for done in ("enrolled-1", "enrolled-x-y", "enrolled-1-2-3", "enrolled--", "whatever"):
        page = client.get(f"/cases/c1?done={done}")
        assert page.status_code == 200 and 'id="notice"' not in page.text, done


def test_the_withdrawal_notice_names_only_a_case_that_is_gone(work):
    client = signed_in_client(work, "ada")
    assert 'id="notice"' in client.get("/cases?withdrawn=c9").text
    assert 'id="notice"' not in client.get("/cases?withdrawn=c1").text  # still there
    text = client.get("/cases", params={"withdrawn": "c1. Call us at 555"}).text
    assert 'id="notice"' not in text and "Call us" not in text


def status_of(work, match_id: int = 1) -> str:
    with work.sessions() as session:
        return session.get(Match, match_id).status


def test_the_reviewer_who_marked_a_match_unsure_cannot_decide_it_themselves(work):
    anna = signed_in_client(work, "anna")
    page = anna.get("/matches/1")
    anna.post("/matches/1/decision", data={"csrf_token": csrf_of(page.text), "decision": "unsure", "note": "twin?",
                                           "back": "/matches/1"})
    assert status_of(work) == "unsure"
    page = anna.get("/matches/1")  # not claimed, and not because another reviewer holds it
    assert 'id="second-opinion-needed"' in page.text and 'id="held-by-other"' not in page.text
    for decision in ("confirmed", "rejected"):
        answer = anna.post("/matches/1/decision", data={"csrf_token": csrf_of(page.text), "decision": decision,
                                                        "back": "/queue"})
        assert answer.status_code == 303 and "error=second_opinion_needed" in answer.headers["location"]
        assert "another reviewer gives the second opinion" in anna.get(answer.headers["location"]).text
    key = keys.create_key(work, OPERATOR, "anna", "reviewer")  # the JSON API: the same person, the same rule
    api = signed_in_client(work)
    for status in ("confirmed", "pending_review"):
        answer = api.post("/matches/1/review", json={"status": status},
                          headers={"Authorization": f"Bearer {key}", "Accept": "application/json"})
        assert answer.status_code == 409 and answer.json()["error"] == "second_opinion_needed"
    assert status_of(work) == "unsure"
    refused = audit_rows(work, actor="anna", action="review", outcome="rejected")
    assert refused[-1].details["reason"] == "second_opinion_needed"
    bob = signed_in_client(work, "bob")  # the second opinion
    page = bob.get("/matches/1")
    bob.post("/matches/1/decision", data={"csrf_token": csrf_of(page.text), "decision": "confirmed",
                                          "back": "/queue"})
    assert status_of(work) == "confirmed"


def test_an_admin_may_decide_a_match_they_marked_unsure(work):
    ada = Actor("ada", "admin")
    queue.decide(work, ada, 1, "unsure")
    assert queue.decide(work, ada, 1, "rejected").status == "rejected"


def claimed_by(work, match_id: int = 1) -> str | None:
    with work.sessions() as session:
        return session.get(Match, match_id).claimed_by


def test_disabling_a_user_revokes_their_keys_ends_their_access_and_frees_their_claims(work):
    key = keys.create_key(work, OPERATOR, "anna", "reviewer")
    api = signed_in_client(work)
    as_key = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    assert api.get("/matches", headers=as_key).status_code == 200
    assert queue.claim(work, Actor("anna", "reviewer"), [1]) == [1]
    users.disable_user(work, Actor("ada", "admin"), "anna")
    assert claimed_by(work) is None
    assert api.get("/matches", headers=as_key).status_code == 401
    assert audit_rows(work, action="revoke_key", target="key:anna")[-1].result_count == 1
    with work.sessions() as session:
        assert access.visible_case_ids(session, Actor("anna", "reviewer")) == set()
    users.enable_user(work, Actor("ada", "admin"), "anna")
    assert api.get("/matches", headers=as_key).status_code == 401  # enabling brings no key back
    with work.sessions() as session:
        assert access.visible_case_ids(session, Actor("anna", "reviewer")) == {"c1"}


def test_unassigning_a_case_frees_the_reviewers_claims_of_that_case(work):
    add_case_with_match(work, "c2", 8, "b" * 64, crop=crop_jpeg(seed=3), reference=crop_jpeg(seed=4),
                        assigned=("bob",))
    assert queue.claim(work, Actor("bob", "reviewer"), [1, 2]) == [1, 2]
    access.unassign(work, OPERATOR, "c1", "bob")
    assert (claimed_by(work, 1), claimed_by(work, 2)) == (None, "bob")



def test_the_second_factor_rotates_the_session_and_signing_in_again_ends_the_old_one(work):
    client = signed_in_client(work)
    page = client.get("/login")
    client.post("/login", data={"csrf_token": csrf_of(page.text), "username": "anna", "password": PASSWORD})
    pending = client.cookies.get(COOKIE)
    code_page = client.get("/login/code")
    done = client.post("/login/code", data={"csrf_token": csrf_of(code_page.text), "code": code_for("anna", 1)})
    assert done.status_code == 303
    full = client.cookies.get(COOKIE)
    assert full != pending and users.signed_in(work, pending, pending_ok=True) is None
    signed = users.signed_in(work, full)
    assert signed.username == "anna" and signed.csrf_token != csrf_of(code_page.text)
    page = client.get("/login")  # the same browser signs in again: its earlier session ends
    again = client.post("/login", data={"csrf_token": csrf_of(page.text), "username": "anna", "password": PASSWORD})
    assert again.status_code == 303 and client.cookies.get(COOKIE) != full
    assert users.signed_in(work, full) is None


def statements_of(work, call) -> list[str]:
    """The SQL statements ``call`` sends (their text without the values)."""
    engine, sent = work.sessions.kw["bind"], []

    def listen(_conn, _cursor, statement, _parameters, _context, _many):
        sent.append(statement.split(" WHERE")[0])

    event.listen(engine, "before_cursor_execute", listen)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    return sent


def test_a_refused_sign_in_does_the_same_database_work_for_an_unknown_name(work):
    def refused(name: str, client: str):
        with pytest.raises(Unauthenticated):
            users.sign_in(work, name, "not the password at all", client)

    known = statements_of(work, lambda: refused("anna", "10.1.0.1"))
    unknown = statements_of(work, lambda: refused("nobody-here", "10.1.0.2"))
    assert known == unknown and any(s.startswith("UPDATE users") for s in known)


def test_a_name_that_is_no_users_is_not_kept_in_the_audit_log(work):
    typed = "my secret passphrase 42"  # a password typed into the username field
    with pytest.raises(Unauthenticated):
        users.sign_in(work, typed, "whatever", "10.1.0.3")
    with pytest.raises(Unauthenticated):
        users.sign_in(work, "anna", "not the password at all", "10.1.0.3")
    unknown, known = audit_rows(work, action="sign_in", outcome="rejected")[-2:]
    assert (unknown.actor, unknown.target, known.actor, known.target) == ("unknown", None, "anna", "user:anna")
    with work.sessions() as session:
        kept = str([(r.actor, r.target, r.details) for r in session.scalars(select(AuditEvent))]) + \
            str(list(session.scalars(select(LoginAttempt.username))))
    assert typed not in kept
    for attempt in range(5):  # the name is still throttled, under its digest
        with pytest.raises(Unauthenticated):
            users.sign_in(work, typed, "whatever", f"10.1.1.{attempt}")
    with pytest.raises(Unauthenticated) as locked:
        users.sign_in(work, typed, "whatever", "10.1.2.1")
    assert locked.value.reason == "throttled"


def test_at_most_two_argon2_hashes_run_at_once(work, monkeypatch):
    running, most, lock = [0], [0], threading.Lock()

    class Slow(PasswordHasher):
        def verify(self, stored, given):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            try:
                time.sleep(0.05)
                return super().verify(stored, given)
            finally:
                with lock:
                    running[0] -= 1

    monkeypatch.setattr(users, "HASHER", Slow(time_cost=1, memory_cost=8, parallelism=1))

    def attempt(i: int) -> None:
        with pytest.raises(Unauthenticated):
            users.sign_in(work, "anna", f"wrong {i}", f"10.2.0.{i}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(attempt, range(8)))
    assert users.ARGON2_AT_ONCE == 2 and most[0] == 2


def access_line(path: str) -> str:
    """uvicorn's access log line for a GET of ``path`` (with its query), through the filter."""
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", path, "1.1", 200), None)
    assert RedactSecrets().filter(record)
    return AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False).format(record)


def test_the_access_log_shows_no_invitation_token_and_no_sign_in_query():
    token = "Zx9" * 14
    assert token not in access_line(f"/invite/{token}") and "/invite/[redacted]" in access_line(f"/invite/{token}")
    assert token not in access_line(f"/invite/{token}?x=1")
    assert access_line("/login?next=/cases/c1") .startswith('127.0.0.1:5000 - "GET /login?[redacted] HTTP/1.1" 200')
    assert "next=" not in access_line("/login/code?next=/matches/3")
    assert "/queue?lane=unsure" in access_line("/queue?lane=unsure")  # other pages as they are
    assert "/cases/c1" in access_line("/cases/c1")


def test_mimamori_api_runs_uvicorn_with_the_filter(monkeypatch):
    import signal

    import uvicorn

    from mimamori.cli import main as cli
    from mimamori.core import scrape_targets

    ran = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.update(options))
    monkeypatch.setattr(scrape_targets, "register_scrape_target", lambda *args, **kwargs: None)
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    monkeypatch.setattr(logging.getLogger("uvicorn.access"), "filters", [])
    assert cli.main(["api"]) == 0
    config = ran["log_config"]
    assert "redact_secrets" in config["handlers"]["access"]["filters"]
    assert config["filters"]["redact_secrets"]["()"] == "mimamori.api.logs.RedactSecrets"
    assert any(isinstance(f, RedactSecrets) for f in logging.getLogger("uvicorn.access").filters)


def test_an_invitation_shows_a_new_secret_each_time_it_is_opened(work):
    invitation = users.create_user(work, OPERATOR, "carla", "reviewer")
    newcomer = signed_in_client(work)
    first = newcomer.get(f"/invite/{invitation.token}")
    second = newcomer.get(f"/invite/{invitation.token}")
    secret_of = lambda page: re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text).group(1)  # noqa: E731
    assert secret_of(first) != secret_of(second)
    refused = newcomer.post(f"/invite/{invitation.token}", data={
        "csrf_token": csrf_of(second.text), "password": PASSWORD, "password_again": PASSWORD,
        "code": pyotp.TOTP(secret_of(first)).now()})  # the code of the QR shown first: no more
    assert refused.status_code == 400 and secret_of(refused) == secret_of(second)  # the same QR to try again
    done = newcomer.post(f"/invite/{invitation.token}", data={
        "csrf_token": csrf_of(second.text), "password": PASSWORD, "password_again": PASSWORD,
        "code": pyotp.TOTP(secret_of(second)).now()})
    assert done.status_code == 303


class Counted:
    """An upload body that counts how much of it was read."""

    def __init__(self, size: int, chunk: int = 64 * 1024):
        self.size, self.chunk, self.read = size, chunk, 0

    def __iter__(self):
        while self.read < self.size:
            part = b"x" * min(self.chunk, self.size - self.read)
            self.read += len(part)
            yield part


def test_an_anonymous_upload_is_refused_before_its_body_is_read(work):
    client = signed_in_client(work)
    boundary = "----b"
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(10 * 1024 * 1024)}
    for path in ("/search", "/cases/c1/photos"):
        body = Counted(10 * 1024 * 1024)
        answer = client.post(path, content=body, headers=headers)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), path
        assert body.read < 10 * 1024 * 1024, path  # not read to the end
    body = Counted(1024)
    api = client.post("/search", content=body, headers={**headers, "Content-Length": "1024",
                                                         "Accept": "application/json"})
    assert api.status_code == 401 and api.json()["error"] == "unauthenticated"
    assert audit_rows(work, actor="anonymous", outcome="denied")[-1].action == "POST /search"


def test_a_body_over_the_limit_is_refused_by_its_length_or_as_it_streams(work):
    limit = signed_in_client(work).app.state.request_limit
    assert limit == work.settings.api.max_upload_bytes * limits.PHOTOS_PER_REQUEST + limits.FORM_OVERHEAD_BYTES
    ada = signed_in_client(work, "ada")
    csrf = csrf_of(ada.get("/search").text)
    page = ada.post("/search", files={"photo": ("a.jpg", b"x", "image/jpeg")}, data={"csrf_token": csrf},
                    headers={"Content-Length": str(limit + 1)})
    assert page.status_code == 413 and 'id="refusal"' in page.text and "too large" in page.text
    assert page.headers["content-security-policy"] and page.headers["cache-control"] == "no-store"
    key = keys.create_key(work, OPERATOR, "ada", "admin")
    api = signed_in_client(work)
    answer = api.post("/search", content=b"x" * 10, headers={"Authorization": f"Bearer {key}", "Accept": "*/*",
                                                               "Content-Type": "multipart/form-data; boundary=b",
                                                               "Content-Length": str(limit + 1)})
    assert answer.status_code == 413 and answer.json()["error"] == "too_large"
    refused = signed_in_client(work)  # a body without Content-Length, counted as it streams in
    refused.app.user_middleware[0].kwargs["limit"] = 10_000  # the app's stack is built on its first request
    head = b'--b\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    answer = refused.post("/search", content=itertools.chain([head], Counted(50_000, chunk=1000)), headers={
        "Authorization": f"Bearer {key}", "Accept": "application/json",
        "Content-Type": "multipart/form-data; boundary=b"})
    assert answer.status_code == 413 and answer.json()["error"] == "too_large"


def test_the_limit_stops_reading_a_streamed_body_at_the_limit():
    reads, sent = [0], []

    async def receive():
        reads[0] += 1
        return {"type": "http.request", "body": b"x" * 100, "more_body": reads[0] < 50}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):  # reads the whole body, then answers 200
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limited = limits.BodyLimit(app, 1000, lambda scope: False, None)
    scope = {"type": "http", "method": "POST", "path": "/x", "headers": [(b"authorization", b"Bearer k"),
                                                                          (b"transfer-encoding", b"chunked")]}
    asyncio.run(limited(scope, receive, send))
    assert reads[0] == 11 and [m.get("status") for m in sent if m["type"] == "http.response.start"] == [413]


def test_strict_transport_security_when_the_workbench_is_served_over_https(work):
    assert "strict-transport-security" not in signed_in_client(work).get("/login").headers  # public_url unset
    work.settings.web.public_url = "https://workbench.example.org"
    for path in ("/login", "/static/workbench.css", "/metrics"):
        answer = signed_in_client(work).get(path)
        assert answer.headers["strict-transport-security"].startswith("max-age=31536000"), path


def test_the_operation_charts_labels_are_in_the_readers_language(work):
    from mimamori.web import charts
    from mimamori.web.i18n import translations

    now = dt.datetime.now(dt.UTC)
    svg = charts.line_chart([(now.timestamp() - 600, 3.0)], now, gettext=translations("ja").gettext)
    assert "最大 3" in svg and "24 時間前" in svg and "現在" in svg and ">now<" not in svg
    assert ">now<" in charts.line_chart([], now) and "max 0" in charts.line_chart([], now)
    users.set_preferences(work, users.signed_in(work, (client := signed_in_client(work, "anna")).cookies.get(COOKIE)),
                          language="ja")
    client.app.state.prometheus_fetch = lambda _url: {"status": "success", "data": {"result": []}}
    assert "24 時間前" in client.get("/operations").text


SERVER_SIDE = {"Misconfigured", "Unavailable"}  # a page says "unavailable" for these, never their reason
# Read when the process starts (settings, models), never while a page is answered; the web package is walked anyway.
STARTUP_ONLY = ("mimamori.web", "mimamori.cli", "mimamori.core.config", "mimamori.models")


def _modules_the_pages_reach() -> set[Path]:
    """The web package's files and every mimamori module they import, transitively (services, stores...)."""
    todo = list(WEB.rglob("*.py"))
    files = set(todo)
    while todo:
        for node in ast.walk(ast.parse(todo.pop().read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names += [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if not name.startswith("mimamori.") or name.startswith(STARTUP_ONLY):
                    continue
                try:
                    spec = importlib.util.find_spec(name)
                except (ImportError, AttributeError, ValueError):
                    continue
                found = Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None
                if found is not None and found not in files:
                    files.add(found)
                    todo.append(found)
    return files


def raised_reasons() -> dict[str, set[str]]:
    """Every reason a refusal raised in what the pages reach is made with: reason -> where."""
    kinds = {name for name, value in vars(errors).items()
             if inspect.isclass(value) and issubclass(value, errors.MimamoriError) and name not in SERVER_SIDE}
    found: dict[str, set[str]] = {}
    for path in _modules_the_pages_reach():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in kinds \
                    and len(node.args) == 2 and isinstance(node.args[0], ast.Constant):
                found.setdefault(node.args[0].value, set()).add(path.name)
    return found


def test_every_refusal_the_pages_can_meet_is_said_in_english_and_japanese():
    reasons = raised_reasons()
    assert {"unknown_user", "second_opinion_needed", "bad_time", "unknown_photo", "consent_missing"} <= set(reasons)
    missing = sorted(f"{reason} ({', '.join(sorted(where))})" for reason, where in reasons.items()
                     if reason not in REASONS)
    assert not missing, f"add these to mimamori/web/render.py's REASONS: {missing}"
    for reason, message in REASONS.items():
        assert translations("ja").gettext(message) != message, reason


def test_an_invalid_consent_names_its_fields_not_pydantics_words(work):
    ada = signed_in_client(work, "ada")
    page = ada.get("/cases/c1")
    answer = ada.post("/cases/c1/consent", data={"csrf_token": csrf_of(page.text), "given_by": "Mia",
                                                 "given_at": "2026-01-01T10:00", "scope": ["nonsense"],
                                                 "document_sha256": "not a digest"})
    assert answer.status_code == 422
    said = re.search(r'id="consent-error"[^>]*>([^<]+)<', answer.text).group(1)
    assert said.startswith("The consent record is incomplete or not valid") and "Scope" in said
    assert "SHA-256 of the signed consent document" in said and "String should" not in said


WEB = TEMPLATES.parent


def test_counts_are_said_with_the_plural_of_their_language(work):
    from mimamori.web.render import environment

    one = environment("en").from_string('{{ ngettext("Seen %(num)s time", "Seen %(num)s times", n) }}')
    assert (one.render(n=1), one.render(n=3)) == ("Seen 1 time", "Seen 3 times")
    ja = environment("ja").from_string('{{ ngettext("Seen %(num)s time", "Seen %(num)s times", n) }}')
    assert (ja.render(n=1), ja.render(n=3)) == ("1 回確認", "3 回確認")


def test_a_matchs_face_is_read_from_the_collection_of_the_model_that_made_it(work, monkeypatch):
    from mimamori.models.registry import DLIB_RESNET, FACENET_VGGFACE2
    from mimamori.services import review_images, workspace
    from tests.support.workspace import MemoryFaceIndex

    assert workspace.model_of_version(f"{DLIB_RESNET.version}@weights.dat#ab12") == DLIB_RESNET.name
    assert workspace.model_of_version("memory/v1") is None and workspace.model_of_version(None) is None
    with work.sessions.begin() as session:  # match 1 was made by dlib-resnet ...
        session.get(Match, 1).model_version = f"{DLIB_RESNET.version}@weights.dat#ab12"
    own = MemoryFaceIndex(DLIB_RESNET.name, work.index.faces)
    promoted = MemoryFaceIndex(FACENET_VGGFACE2.name, [])  # ... and the search alias now points to facenet's
    monkeypatch.setattr(type(work), "searcher", property(lambda self: promoted))
    monkeypatch.setattr(type(work), "searcher_for", lambda self, model: {DLIB_RESNET.name: own}[model])
    evidence = queue.evidence(work, Actor("anna", "reviewer"), 1)
    assert evidence.face is not None and evidence.face.face_id == 7
    view = users.ViewSettings(24, True, "en")
    assert review_images.found_face_image(work, Actor("anna", "reviewer"), 1, view)[:2] == b"\xff\xd8"
    items = [i for q in queue.review_queue(work, Actor("anna", "reviewer")) for c in q.clusters for i in c.items]
    assert [i.face is not None for i in items] == [True]


def test_retro_matches_carry_their_medias_phash(tmp_path):
    from mimamori.services import cases, enrolment
    from mimamori.services.consent import ConsentRecord, record_consent
    from tests.support.workspace import consent_record, photo_of

    client = (200, 40, 40)
    indexed = [IndexedFace(11, "a" * 64, unit(1, 0.05), phash="8f3c00ff12ab34cd"),
               IndexedFace(12, "b" * 64, unit(1, 0.1))]  # no pHash known: the match has none
    work = MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {client: [unit(1, 0)]}, indexed)
    cases.create_case(work, OPERATOR, "c1", "Client C.")
    record_consent(work, OPERATOR, "c1", ConsentRecord(**consent_record()))
    result = enrolment.enroll(work, OPERATOR, "c1", [("p.jpg", photo_of(client), "image/jpeg")])
    assert result.retro_matches == 2
    with work.sessions() as session:
        found = {m.face_id: (m.source, m.media_phash) for m in session.scalars(select(Match))}
    assert found == {11: ("retro", "8f3c00ff12ab34cd"), 12: ("retro", None)}
    assert [c for c in work.index.calls if c[0] == "media_phashes"] == [("media_phashes", 2)]  # one read


def test_the_face_store_reads_a_medias_phash_from_its_binary_vector():
    from pymilvus.exceptions import MilvusException

    from mimamori.stores.face_search import FaceSearch

    class Media:
        def __init__(self, rows=None):
            self.rows, self.asked = rows, []

        def query(self, expr, **options):
            self.asked.append((expr, options["output_fields"]))
            if self.rows is None:
                raise MilvusException(message="vector output not supported")
            return self.rows

    store = object.__new__(FaceSearch)
    store.media = Media([{"sha256": "a" * 64, "phash": [bytes.fromhex("8f3c00ff12ab34cd")]},
                         {"sha256": "b" * 64, "phash": bytes.fromhex("0000000000000001")},
                         {"sha256": "c" * 64, "phash": b"short"}])
    assert store.media_phashes({"a" * 64, "b" * 64, "c" * 64}) == {"a" * 64: "8f3c00ff12ab34cd",
                                                                    "b" * 64: "0000000000000001"}
    assert store.media.asked[0][1] == ["sha256", "phash"] and store.media_phashes(set()) == {}
    store.media = Media()
    assert store.media_phashes({"a" * 64}) == {}  # the hash only helps clustering: no hash, no failure
