"""The workbench's pages as a front door (mimamori/web), on in-memory stores: sign-in, the
redirect of every page to sign-in, CSRF on every form, security headers and cookies, the
browser/API split of shared paths, access by case, decisions, upload refusals on the page."""

from __future__ import annotations

import io
import re

import pytest
from fastapi.routing import APIRoute
from PIL import Image
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.services import users
from mimamori.stores.cases import AuditEvent, Match, MatchDecision
from mimamori.web import charts
from mimamori.web.render import CSP, TEMPLATES
from mimamori.web.security import COOKIE, safe_next
from tests.support.web import (
    PASSWORD,
    add_case_with_match,
    cheap_passwords,
    code_for,
    crop_jpeg,
    csrf_of,
    make_user,
    signed_in_client,
)
from tests.support.workspace import IndexedFace, MemoryWorkspace, photo_of, unit

PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/invite/{token}"), ("POST", "/invite/{token}")}
PARAMS = {"{token}": "t" * 43, "{case_id}": "c1", "{match_id}": "1", "{photo_id}": "1", "{face_id}": "7",
          "{username}": "anna"}


@pytest.fixture
def work(tmp_path, monkeypatch) -> MemoryWorkspace:
    cheap_passwords(monkeypatch)
    work = MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {},
                           [IndexedFace(7, "a" * 64, unit(1, 0)), IndexedFace(8, "b" * 64, unit(0, 1))])
    for name, role in (("anna", "reviewer"), ("bob", "reviewer"), ("ada", "admin"), ("otto", "auditor")):
        make_user(work, name, role)
    add_case_with_match(work, "c1", 7, "a" * 64, crop=crop_jpeg(), reference=crop_jpeg(seed=2), assigned=("anna",))
    add_case_with_match(work, "c2", 8, "b" * 64, crop=crop_jpeg(seed=3), reference=crop_jpeg(seed=4))
    return work


def audit_rows(work, **where) -> list[AuditEvent]:
    with work.sessions() as session:
        rows = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    return [r for r in rows if all(getattr(r, k) == v for k, v in where.items())]


def flat(routes):
    """Every route, those of included routers too (FastAPI keeps an included router whole)."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from flat(route.original_router.routes)
        else:
            yield route


def web_routes(app) -> list[tuple[str, str]]:
    return sorted({(method, route.path) for route in flat(app.routes) if isinstance(route, APIRoute)
                   and route.endpoint.__module__.startswith("mimamori.web.") for method in route.methods})


def fill(path: str) -> str:
    for name, value in PARAMS.items():
        path = path.replace(name, value)
    return path


def test_every_page_redirects_to_sign_in_without_a_session(work):
    client = signed_in_client(work)
    routes = web_routes(client.app)
    assert len(routes) >= 35, routes  # a new page is walked too
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        answer = client.request(method, fill(path))
        assert answer.status_code == 303, (method, path, answer.status_code, answer.text[:200])
        location = answer.headers["location"]
        assert location.startswith("/login?next=/"), (method, path, location)
    assert client.get("/login").status_code == 200
    assert client.get(f"/invite/{'t' * 43}").status_code == 404  # an unknown invitation, said on a page


def test_every_form_post_without_the_csrf_token_is_refused_and_audited(work):
    client = signed_in_client(work, "ada")
    posts = [path for method, path in web_routes(client.app) if method == "POST"]
    assert len(posts) >= 18
    for path in posts:
        answer = client.post(fill(path), data={"csrf_token": "wrong", "decision": "confirmed", "match_ids": "1"})
        assert answer.status_code == 403, (path, answer.status_code)
        assert "form has expired" in answer.text
        assert client.post(fill(path)).status_code == 403, path  # no token at all
    refused = audit_rows(work, outcome="denied")
    assert len([r for r in refused if r.details.get("reason") == "csrf"]) == 2 * len(posts)
    assert {r.actor for r in refused if r.details.get("reason") == "csrf"} == {"ada", "anonymous"}
    with work.sessions() as session:
        assert session.scalars(select(Match.status)).all() == ["pending_review", "pending_review"]


def test_sign_in_with_password_and_code_sets_a_strict_session_cookie(work):
    client = signed_in_client(work)
    page = client.get("/login?next=/cases")
    assert page.status_code == 200 and 'name="login"' in page.text
    form_cookie = page.headers["set-cookie"]
    assert all(flag in form_cookie for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"))
    token = csrf_of(page.text)
    wrong = client.post("/login", data={"csrf_token": token, "username": "anna", "password": "nope nope nope",
                                        "next": "/cases"})
    assert wrong.status_code == 401 and "username or password is wrong" in wrong.text
    answer = client.post("/login", data={"csrf_token": token, "username": "anna", "password": PASSWORD,
                                         "next": "/cases"})
    assert answer.status_code == 303 and answer.headers["location"] == "/login/code?next=/cases"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and all(f in cookie for f in ("HttpOnly", "Secure", "SameSite=strict",
                                                                          "Path=/"))
    assert client.get("/queue").headers["location"].startswith("/login")  # the code is still pending
    code_page = client.get("/login/code?next=/cases")
    csrf = csrf_of(code_page.text)
    refused = client.post("/login/code", data={"csrf_token": csrf, "code": "000000", "next": "/cases"})
    assert refused.status_code == 401 and "code is wrong" in refused.text
    done = client.post("/login/code", data={"csrf_token": csrf, "code": code_for("anna", 1), "next": "/cases"})
    assert done.status_code == 303 and done.headers["location"] == "/cases"
    cases = client.get("/cases")
    assert cases.status_code == 200 and csrf_of(cases.text) != csrf  # a new session token and CSRF token
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 403  # the pending one's is no more
    logout = client.post("/logout", data={"csrf_token": csrf_of(cases.text)})
    assert logout.status_code == 303 and client.get("/cases").status_code == 303


def test_the_way_back_keeps_its_query_through_both_steps(work):
    client = signed_in_client(work)
    back = "/queue?lane=unsure&order=strongest"
    assert client.get(back).headers["location"] == "/login?next=/queue%3Flane%3Dunsure%26order%3Dstrongest"
    token = csrf_of(client.get("/login", params={"next": back}).text)
    step = client.post("/login", data={"csrf_token": token, "username": "anna", "password": PASSWORD, "next": back})
    code_page = client.get(step.headers["location"])
    done = client.post("/login/code", data={"csrf_token": csrf_of(code_page.text), "code": code_for("anna", 1),
                                            "next": re.search(r'name="next" value="([^"]*)"', code_page.text)
                                            .group(1).replace("&amp;", "&")})
    assert done.headers["location"] == back


def test_the_way_back_after_sign_in_stays_on_this_site():
    for hostile in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "",
                    "/ok\r\nSet-Cookie: x=1"):
        assert safe_next(hostile) == "/queue", hostile
    assert safe_next("/cases/c1?x=1") == "/cases/c1?x=1"


def test_pages_and_images_carry_the_security_headers(work):
    client = signed_in_client(work, "anna")
    assert "unsafe-inline" not in CSP and "frame-ancestors 'none'" in CSP
    for path in ("/login", "/queue", "/images/matches/1/found", "/no-such-page-of-the-api"):
        answer = client.get(path)
        if path.startswith("/no-such"):
            assert "content-security-policy" not in answer.headers  # the API's answers are left as they are
            continue
        assert answer.headers["content-security-policy"] == CSP, path
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
    assert client.get("/static/workbench.js").headers["content-security-policy"] == CSP


def test_templates_have_no_inline_script_style_or_handlers():
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template.name
        assert not re.search(r"\sstyle=|<style", text), template.name
        assert not re.search(r"\son[a-z]+=", text), template.name
        assert "http://" not in text and "https://" not in text, template.name  # no CDN, nothing outside


def test_a_shared_path_is_the_page_for_a_browser_and_json_for_a_key(work):
    client = signed_in_client(work, "anna")
    assert "<html" in client.get("/cases/c1").text
    api = client.get("/cases/c1", headers={"Accept": "application/json"})
    assert api.status_code == 401 and api.json()["error"] == "unauthenticated"  # the API's route, as before
    assert client.get("/openapi.json", headers={"Accept": "application/json"}).status_code == 200
    assert not [p for p in client.get("/openapi.json").json()["paths"] if p.startswith(("/queue", "/login"))]


def test_a_reviewer_sees_only_assigned_cases(work):
    anna, bob = signed_in_client(work, "anna"), signed_in_client(work, "bob")
    queue = anna.get("/queue")
    assert 'data-match-id="1"' in queue.text and 'data-match-id="2"' not in queue.text
    assert 'data-match-id="1"' not in bob.get("/queue").text
    for path in ("/matches/1", "/images/matches/1/found", "/images/photos/1/enrolled", "/cases/c1"):
        answer = bob.get(path)
        assert answer.status_code == 403, (path, answer.status_code)
    assert anna.get("/matches/2").status_code == 403
    assert 'data-case-id="c2"' not in anna.get("/cases").text
    assert audit_rows(work, actor="bob", action="view_match", outcome="rejected")
    assert signed_in_client(work, "otto").get("/queue").status_code == 403  # auditors read the log only


def test_opening_the_queue_claims_its_items_and_a_decision_is_recorded(work):
    anna, admin = signed_in_client(work, "anna"), signed_in_client(work, "ada")
    page = anna.get("/queue")
    with work.sessions() as session:
        assert session.get(Match, 1).claimed_by == "anna"
    assert 'data-match-id="1"' not in admin.get("/queue").text  # held by anna
    answer = anna.post("/matches/1/decision", data={"csrf_token": csrf_of(page.text), "decision": "confirmed",
                                                    "note": "her tattoo", "back": "/queue"})
    assert answer.status_code == 303 and answer.headers["location"] == \
        "/queue?confirmed_case=c1&confirmed=1"  # its takedowns are said there
    with work.sessions() as session:
        match = session.get(Match, 1)
        assert (match.status, match.note, match.claimed_by) == ("confirmed", "her tattoo", None)
        assert [(d.decision, d.actor) for d in session.scalars(select(MatchDecision))] == [("confirmed", "anna")]


def test_the_first_opening_of_the_queue_says_until_when_its_items_are_held(work):
    """The items are listed, then claimed: the page shows the claim just taken, not the none before it."""
    page = signed_in_client(work, "anna").get("/queue").text
    with work.sessions() as session:
        until = session.get(Match, 1).claimed_until
    held = re.search(r'Held for you until</dt><dd>([^<]*)</dd>', page).group(1)
    assert until is not None and held == until.strftime("%Y-%m-%d %H:%M UTC")


def test_a_cluster_is_decided_at_once(work):
    add_case_with_match(work, "c1", 9, "a" * 64, crop=crop_jpeg(seed=5), reference=crop_jpeg(seed=2))
    anna = signed_in_client(work, "anna")
    page = anna.get("/queue")
    assert page.text.count('name="cluster-decision"') == 1
    answer = anna.post("/queue/decisions", data={"csrf_token": csrf_of(page.text), "decision": "rejected",
                                                 "match_ids": ["1", "3"], "back": "/queue"})
    assert answer.status_code == 303
    with work.sessions() as session:
        assert [(d.match_id, d.bulk) for d in session.scalars(select(MatchDecision))] == [(1, True), (3, True)]


def png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("1", size).save(out, "PNG")
    return out.getvalue()


def test_upload_refusals_are_said_on_the_page(work):
    admin = signed_in_client(work, "ada")
    csrf = csrf_of(admin.get("/search").text)
    cases = [
        (("notes.txt", b"hello", "text/plain"), 415, "This is not an image"),
        (("bomb.png", png((9000, 9000)), "image/png"), 422, "too many pixels"),
        (("broken.jpg", b"\xff\xd8\xff\xe0 not really", "image/jpeg"), 422, "damaged"),
    ]
    for upload, status, said in cases:
        answer = admin.post("/search", data={"csrf_token": csrf}, files={"photo": upload})
        assert answer.status_code == status and said in answer.text, (upload[0], answer.status_code)
        assert 'id="page-error"' in answer.text
    work.settings.api.max_upload_bytes = 1000
    answer = admin.post("/cases/c1/photos", data={"csrf_token": csrf},
                        files={"photos": ("big.jpg", crop_jpeg(400), "image/jpeg")})
    assert answer.status_code == 413 and "too large" in answer.text and 'id="enrol-error"' in answer.text
    assert len(audit_rows(work, action="search", outcome="rejected")) == 3
    assert audit_rows(work, action="enroll", outcome="rejected")


def test_an_admin_invites_a_user_who_sets_up_their_account(work):
    admin = signed_in_client(work, "ada")
    csrf = csrf_of(admin.get("/admin/users").text)
    created = admin.post("/admin/users", data={"csrf_token": csrf, "username": "carla", "role": "reviewer"})
    link = re.search(r'id="invitation-url" class="url">https://testserver(/invite/[^<]+)<', created.text).group(1)
    newcomer = signed_in_client(work)
    page = newcomer.get(link)
    assert page.status_code == 200 and "<svg" in page.text
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text).group(1)
    import pyotp
    done = newcomer.post(link, data={"csrf_token": csrf_of(page.text), "password": PASSWORD,
                                     "password_again": PASSWORD, "code": pyotp.TOTP(secret).now()})
    assert done.status_code == 303 and done.headers["location"] == "/login?enrolled=1"
    assert [u.status for u in users.list_users(work, users.Actor("ada", "admin")) if u.username == "carla"] \
        == ["active"]
    assigned = admin.post("/admin/assignments", data={"csrf_token": csrf, "case_id": "c2", "username": "carla"})
    assert assigned.status_code == 303
    disabled = admin.post("/admin/users/anna/disable", data={"csrf_token": csrf})
    assert disabled.status_code == 303
    assert signed_in_client(work).get("/queue").status_code == 303


def test_the_case_page_shows_the_consent_record_and_withdraws_on_typed_confirmation(work):
    admin = signed_in_client(work, "ada")
    page = admin.get("/cases/c1")
    csrf = csrf_of(page.text)
    recorded = admin.post("/cases/c1/consent", data={"csrf_token": csrf, "given_by": "client",
                                                     "given_at": "2026-01-02T10:00", "tz_offset": "-540",
                                                     "scope": ["search", "watchlist"]})
    assert recorded.status_code == 303, recorded.text[:500]
    page = admin.get("/cases/c1")
    assert "2026-01-02 01:00 UTC" in page.text and 'data-in-force="yes"' in page.text
    work.encoder.faces[(200, 40, 40)] = [unit(1, 0)]  # the photo shows the client's face
    enrolled = admin.post("/cases/c1/photos", data={"csrf_token": csrf},
                          files=[("photos", ("p.jpg", photo_of((200, 40, 40)), "image/jpeg"))])
    assert enrolled.status_code == 303 and enrolled.headers["location"].startswith("/cases/c1?done=enrolled-1-")
    assert 'id="notice"' in admin.get(enrolled.headers["location"]).text
    wrong = admin.post("/cases/c1/withdraw", data={"csrf_token": csrf, "confirm": "c2"})
    assert wrong.status_code == 422 and 'id="withdraw-error"' in wrong.text
    done = admin.post("/cases/c1/withdraw", data={"csrf_token": csrf, "confirm": "c1"})
    assert done.status_code == 303 and done.headers["location"] == "/cases?withdrawn=c1"
    assert admin.get("/cases/c1").status_code == 404
    reviewer = signed_in_client(work, "anna")
    assert reviewer.post("/cases/c2/withdraw", data={"csrf_token": csrf_of(reviewer.get("/account").text),
                                                     "confirm": "c2"}).status_code == 403


def test_a_page_shows_only_its_own_refusals_and_hides_a_failure(work, monkeypatch):
    from mimamori.services import workbench

    client = signed_in_client(work, "anna")
    assert "call 555" not in client.get("/queue", params={"error": "call 555"}).text  # no text from the URL
    assert "Another reviewer holds" in client.get("/queue", params={"error": "claimed_by_other"}).text

    def broken(*_args, **_kwargs):
        raise RuntimeError("/srv/secret/path exploded")

    monkeypatch.setattr(workbench, "list_cases", broken)
    page = client.get("/cases")
    assert page.status_code == 500 and "<html" in page.text and "secret" not in page.text
    assert page.headers["content-security-policy"] == CSP and page.headers["cache-control"] == "no-store"


def test_giving_the_batch_back_frees_it_and_the_page_claims_nothing_until_opened_again(work):
    anna, admin = signed_in_client(work, "anna"), signed_in_client(work, "ada")
    page = anna.get("/queue")
    answer = anna.post("/queue/release", data={"csrf_token": csrf_of(page.text), "match_ids": ["1"]})
    assert answer.status_code == 303 and answer.headers["location"] == "/queue?paused=true"
    paused = anna.get(answer.headers["location"])
    assert 'id="queue-paused"' in paused.text and 'data-match-id="1"' not in paused.text
    with work.sessions() as session:
        assert session.get(Match, 1).claimed_by is None
    assert 'data-match-id="1"' in admin.get("/queue").text  # free for another reviewer at once


def test_a_search_by_photo_shows_its_hits_blurred_with_their_matches(work):
    work.encoder.faces[(200, 40, 40)] = [unit(1, 0.1)]
    admin = signed_in_client(work, "ada")
    found = admin.post("/search", data={"csrf_token": csrf_of(admin.get("/search").text)},
                       files={"photo": ("q.jpg", photo_of((200, 40, 40)), "image/jpeg")})
    assert found.status_code == 200
    assert 'src="/images/matches/1/found"' in found.text  # face 7 is match 1 of c1
    assert 'src="/images/matches/2/found"' in found.text and 'href="/matches/2"' in found.text  # face 8: c2's
    reviewer = signed_in_client(work, "anna")
    mine = reviewer.post("/search", data={"csrf_token": csrf_of(reviewer.get("/search").text)},
                         files={"photo": ("q.jpg", photo_of((200, 40, 40)), "image/jpeg")})
    assert 'data-face-id="7"' in mine.text and 'data-face-id="8"' not in mine.text  # only her cases' matches
    [row] = audit_rows(work, actor="ada", action="search", outcome="ok")
    assert row.result_count == 2


HOSTILE = ("x" * 300, "99999999999999999999", "ü%20é/..")


def unreachable(_url: str) -> dict:
    raise charts.PrometheusUnreachable("no network in the unit tier")


def test_no_page_fails_on_hostile_input(work):
    """Every page and form with odd ids, fields and parameters: a refusal, never a server error."""
    client = signed_in_client(work, "ada")
    client.app.state.prometheus_fetch = unreachable  # the unit tier has no network
    csrf = csrf_of(client.get("/account").text)
    fields = ("decision", "match_ids", "case_id", "username", "confirm", "given_by", "given_at", "role", "code",
              "blur_radius", "claim_minutes", "break_minutes", "language", "password", "new", "current", "note")
    for value in HOSTILE:
        for method, path in web_routes(client.app):
            if path == "/logout":
                continue
            target = path
            for name in PARAMS:
                target = target.replace(name, value)
            answer = client.request(method, target, data={"csrf_token": csrf, **dict.fromkeys(fields, value)},
                                    params={"case": value, "lane": value, "page": value, "since": value,
                                            "next": value})
            assert answer.status_code < 500, (method, target[:80], answer.status_code)
