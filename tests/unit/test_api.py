"""The API as a front door, on in-memory stores: keys and roles, the error mapping, one audit row a refusal.

What each action decides is tested in test_services.py; here, that the routes reach it, that
every refusal becomes the right status with a reason, and that nothing is audited twice.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mimamori.api.app import create_app
from mimamori.core import errors
from mimamori.core.config import load_settings
from mimamori.services.auth import create_api_key
from mimamori.stores.cases import AuditEvent, Match
from tests.support.workspace import IndexedFace, MemoryWorkspace, consent_record, photo_of, unit

CLIENT, GROUP = (200, 40, 40), (40, 200, 40)


@pytest.fixture
def api(tmp_path):
    work = MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3",
                           {CLIENT: [unit(1, 0)], GROUP: [unit(1, 0), unit(0, 1)]},
                           [IndexedFace(11, "a" * 64, unit(1, 0.05))])
    keys = {role: create_api_key(work.sessions, f"k-{role}", role) for role in ("admin", "reviewer", "auditor")}
    with TestClient(create_app(work.settings, work), raise_server_exceptions=False) as client:
        yield client, work, {role: {"Authorization": f"Bearer {key}"} for role, key in keys.items()}


def audit_rows(work) -> list[AuditEvent]:
    with work.sessions() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def test_every_route_needs_a_key_of_its_role(api):
    client, work, headers = api
    routes = [(method.upper(), path) for path, methods in client.get("/openapi.json").json()["paths"].items()
              for method in methods]
    assert len(routes) >= 11
    for method, template in routes:
        path = (template.replace("{case_id}", "c1").replace("{match_id}", "1").replace("{name}", "k")
                .replace("{username}", "k"))
        response = client.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer" and response.json()["error"] == "unauthenticated"
    assert client.post("/cases", json={"id": "c1", "display_name": "C."}, headers=headers["reviewer"]).status_code \
        == 403
    denied = [r for r in audit_rows(work) if r.outcome == "denied"]
    assert len(denied) == len(routes) + 1 and denied[-1].actor == "k-reviewer"


def test_a_case_from_opening_to_export_through_the_routes(api):
    client, _work, headers = api
    admin, reviewer = headers["admin"], headers["reviewer"]
    assert client.post("/cases", json={"id": "c1", "display_name": "C."}, headers=admin).status_code == 201
    assert client.post("/cases/c1/consent", json=consent_record(), headers=admin).status_code == 201
    enrolled = client.post("/cases/c1/photos", files=[("photos", ("p.jpg", photo_of(CLIENT), "image/jpeg"))],
                           headers=admin)
    assert enrolled.status_code == 201 and enrolled.json()["retro_matches"] == 1, enrolled.text
    assert client.get("/cases/c1", headers=reviewer).json()["error"] == "not_assigned"
    assert client.put("/cases/c1/assignments/k-reviewer", headers=admin).status_code == 200
    case = client.get("/cases/c1", headers=reviewer).json()
    assert (case["photos"], case["matches"], case["consent_in_force"]) == (1, 1, True)
    found = client.post("/search", files={"photo": ("q.jpg", photo_of(CLIENT), "image/jpeg")}, headers=reviewer)
    assert [hit["face_id"] for hit in found.json()["results"]] == [11]
    [match] = client.get("/matches", params={"case_id": "c1"}, headers=reviewer).json()
    reviewed = client.post(f"/matches/{match['id']}/review", json={"status": "confirmed"}, headers=reviewer)
    assert reviewed.json()["reviewed_by"] == "k-reviewer"
    assert len(client.get("/cases/c1/export", headers=reviewer).json()["matches"]) == 1
    assert client.delete("/cases/c1", headers=admin).json()["vectors"] == 1
    log = client.get("/audit", params={"case_id": "c1"}, headers=headers["auditor"]).json()
    assert [row["action"] for row in reversed(log) if row["outcome"] != "started"] == [
        "create_case", "record_consent", "enroll", "view_case", "assign", "view_case", "view_matches", "review",
        "train_case_model", "export", "withdraw"]  # the confirm retrained the case's model (issue 20)


def test_refusals_map_to_statuses_with_a_reason_and_are_audited_once(api):
    client, work, headers = api
    admin = headers["admin"]
    client.post("/cases", json={"id": "c1", "display_name": "C."}, headers=admin)
    before = len([r for r in audit_rows(work) if r.outcome == "rejected"])
    big = b"\xff" * (work.settings.api.max_upload_bytes + 1)
    answers = {
        "exists": (client.post("/cases", json={"id": "c1", "display_name": "C."}, headers=admin), 409,
                   "case_exists"),
        "no consent": (client.post("/cases/c1/photos", files=[("photos", ("p.jpg", photo_of(CLIENT), "image/jpeg"))],
                                   headers=admin), 409, "consent_missing"),
        "unknown case": (client.get("/cases/nobody", headers=admin), 404, "unknown_case"),
        "wrong type": (client.post("/cases/c1/photos", files=[("photos", ("a.txt", b"hi", "text/plain"))],
                                   headers=admin), 415, "unsupported_media_type"),
        "too large": (client.post("/cases/c1/photos", files=[("photos", ("b.jpg", big, "image/jpeg"))],
                                  headers=admin), 413, "too_large"),
        "invalid body": (client.post("/cases/c1/consent", json={"scope": []}, headers=admin), 422,
                         "invalid_request"),
        "unknown key": (client.delete("/keys/nobody", headers=admin), 404, "unknown_key"),
        "unknown match": (client.post("/matches/5/review", json={"status": "rejected"}, headers=headers["reviewer"]),
                          404, "unknown_match"),
        "photo or case": (client.post("/search", headers=headers["reviewer"]), 422, "photo_or_case"),
    }
    for name, (response, status, reason) in answers.items():
        assert (response.status_code, response.json()["error"]) == (status, reason), (name, response.text)
        assert response.json()["detail"] and "Traceback" not in response.text
    rejected = [r for r in audit_rows(work) if r.outcome == "rejected"][before:]
    assert sorted(r.details["reason"] for r in rejected) == sorted(reason for *_, reason in answers.values())


def test_an_unexpected_failure_is_a_500_without_a_trace(api, monkeypatch):
    client, _work, headers = api
    from mimamori.services import matches

    def broken(*_args, **_kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(matches, "list_matches", broken)
    response = client.get("/matches", headers=headers["reviewer"])
    assert response.status_code == 500 and "secret" not in response.text and response.json()["error"] == "internal"


def test_each_kind_of_error_has_one_status():
    from mimamori.api.errors import http_status

    kinds = {errors.InvalidInput: 422, errors.NotFound: 404, errors.Conflict: 409, errors.Unauthenticated: 401,
             errors.Forbidden: 403, errors.TooLarge: 413, errors.UnsupportedType: 415, errors.Unavailable: 503,
             errors.Misconfigured: 500, errors.UnknownCase: 404, errors.ConsentMissing: 409,
             errors.PhotoRejected: 422, errors.MimamoriError: 400}
    assert {kind: http_status(kind("x", "y")) for kind in kinds} == kinds


def test_search_checks_the_query_before_reading_the_upload(api):
    client, work, headers = api
    both = client.post("/search", files={"photo": ("a.txt", b"hi", "text/plain")}, data={"case_id": "c1"},
                       headers=headers["reviewer"])
    assert (both.status_code, both.json()["error"]) == (422, "photo_or_case")
    naive = client.post("/search", files={"photo": ("a.txt", b"hi", "text/plain")},
                        params={"posted_from": "2026-01-01T00:00:00"}, headers=headers["reviewer"])
    assert (naive.status_code, naive.json()["error"]) == (422, "naive_time")
    refused = [r for r in audit_rows(work) if r.outcome == "rejected"]
    assert [(r.action, r.target, r.details["reason"]) for r in refused] == [
        ("search", None, "photo_or_case"), ("search", None, "naive_time")]


def test_an_outage_is_answered_without_server_detail_and_audited_as_failed(api, monkeypatch, caplog):
    client, work, headers = api
    from mimamori.services import matches

    def unreachable(*_args, **_kwargs):
        raise errors.Unavailable("milvus_unreachable", "Milvus at milvus.internal:19530 did not answer")

    monkeypatch.setattr(matches, "list_matches", unreachable)
    response = client.get("/matches", headers=headers["reviewer"])
    assert response.status_code == 503 and response.json()["error"] == "milvus_unreachable"
    assert "milvus.internal" not in response.text and "milvus.internal" in caplog.text
    assert audit_rows(work)[-1].outcome == "failed"


def test_a_reviewer_key_sees_only_the_cases_assigned_to_it(api):
    client, work, headers = api
    admin, reviewer = headers["admin"], headers["reviewer"]
    for case_id in ("c1", "c2"):
        client.post("/cases", json={"id": case_id, "display_name": "C."}, headers=admin)
        client.post(f"/cases/{case_id}/consent", json=consent_record(), headers=admin)
        client.post(f"/cases/{case_id}/photos", files=[("photos", ("p.jpg", photo_of(CLIENT), "image/jpeg"))],
                    headers=admin)
    with work.sessions() as session:
        assert {m.case_id for m in session.scalars(select(Match))} == {"c1", "c2"}  # face 11 in each
    assert client.get("/matches", headers=reviewer).json() == []
    assigned = client.put("/cases/c2/assignments/k-reviewer", headers=admin)
    assert assigned.json() == {"case_id": "c2", "username": "k-reviewer", "assigned": True}
    assert [(m["case_id"], m["face_id"]) for m in client.get("/matches", headers=reviewer).json()] == [("c2", 11)]
    for path, method in [("/cases/c1", "GET"), ("/cases/c1/export", "GET"), ("/matches?case_id=c1", "GET")]:
        response = client.request(method, path, headers=reviewer)
        assert (response.status_code, response.json()["error"]) == (403, "not_assigned"), path
    by_case = client.post("/search", data={"case_id": "c1"}, headers=reviewer)
    assert (by_case.status_code, by_case.json()["error"]) == (403, "not_assigned")
    assert client.get("/cases/c2/export", headers=reviewer).status_code == 200
    [row] = client.get("/cases/c2/assignments", headers=admin).json()
    assert (row["username"], row["assigned_by"]) == ("k-reviewer", "k-admin")
    assert client.delete("/cases/c2/assignments/k-reviewer", headers=admin).json()["assigned"] is False
    assert client.get("/matches", headers=reviewer).json() == []
    gone = client.delete("/cases/c2/assignments/k-reviewer", headers=admin)
    assert (gone.status_code, gone.json()["error"]) == (404, "unknown_assignment")
    assert client.put("/cases/c2/assignments/k-reviewer", headers=reviewer).status_code == 403
    refused = [(r.action, r.actor, r.details.get("reason")) for r in audit_rows(work)
               if r.outcome not in ("ok", "started")]
    assert refused == [("view_case", "k-reviewer", "not_assigned"), ("export", "k-reviewer", "not_assigned"),
                       ("view_matches", "k-reviewer", "not_assigned"), ("search", "k-reviewer", "not_assigned"),
                       ("unassign", "k-admin", "unknown_assignment"),
                       ("PUT /cases/{case_id}/assignments/{username}", "k-reviewer", "needs admin")]


def test_admins_create_and_disable_users_through_the_routes(api):
    client, _work, headers = api
    admin = headers["admin"]
    created = client.post("/users", json={"username": "rei", "role": "reviewer"}, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["url"].startswith("http://127.0.0.1:8080/invite/") and "token" not in body
    assert client.post("/users", json={"username": "rei", "role": "reviewer"}, headers=admin).status_code == 409
    assert client.post("/users", json={"username": "Not Valid", "role": "reviewer"}, headers=admin).status_code \
        == 422
    assert client.post("/users", json={"username": "eve", "role": "admin"}, headers=headers["reviewer"]).status_code \
        == 403
    [user] = client.get("/users", headers=admin).json()
    assert (user["username"], user["status"], user["created_by"]) == ("rei", "invited", "k-admin")
    assert client.post("/users/rei/disable", headers=admin).json() == {"username": "rei", "disabled": True}
    assert client.get("/users", headers=admin).json()[0]["status"] == "disabled"
    assert client.post("/users/rei/enable", headers=admin).json()["disabled"] is False
    again = client.post("/users/rei/reset", headers=admin).json()
    assert again["url"] != body["url"]
    assert client.post("/users/nobody/disable", headers=admin).json()["error"] == "unknown_user"
    assert client.put("/cases/c9/assignments/rei", headers=admin).json()["error"] == "unknown_case"
