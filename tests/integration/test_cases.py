"""Cases, enrolment, the watchlist in the stream, search, access control and withdrawal, on the real stack.

One case is enrolled from one photo through the API; an edited re-upload of that photo
goes through Kafka and the pipeline; the match must reach the database and the
``matches`` topic, and a search with the photo must return it at rank 1. Then the case is
withdrawn and every store is checked directly.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from mimamori.api.app import create_app
from mimamori.services.auth import create_api_key
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import AuditEvent, Case, Consent, EnrolledPhoto, Match
from mimamori.stores.enrolled import EnrolledFaces
from mimamori.stores.objects import object_client
from mimamori.stores.takedowns import Takedown
from tests.integration import samples as sample_sets
from tests.integration.helpers import isolated_settings, publish, read_topic, run_pipeline
from tests.support import edits

pytestmark = pytest.mark.integration
CASE = "case-0001"


def consent(**changes) -> dict:
    record = {"given_by": "the client", "relationship_to_client": "self",
              "given_at": (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat(),
              "scope": ["search", "watchlist", "takedown"],
              "expires_at": (dt.datetime.now(dt.UTC) + dt.timedelta(days=365)).isoformat(),
              "recorded_by": "staff-7"}
    record.update(changes)
    return record


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def env(stack, settings, testdata):
    with isolated_settings(settings) as s:
        work = Workspace(s)
        app = create_app(s, work)
        keys = {role: create_api_key(work.sessions, f"test-{role}", role) for role in ("admin", "reviewer", "auditor")}
        with TestClient(app, raise_server_exceptions=False) as client:
            yield {"settings": s, "work": work, "client": client, "keys": keys, "testdata": testdata}


def auth(env, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {env['keys'][role]}"}


def audit_rows(env, *, started: bool = False, **where) -> list[AuditEvent]:
    """The audit rows (oldest first) that match; without the ``started`` rows of attempts unless asked."""
    with env["work"].sessions() as session:
        query = select(AuditEvent).order_by(AuditEvent.id)
        for name, value in where.items():
            query = query.where(getattr(AuditEvent, name) == value)
        if not started:
            query = query.where(AuditEvent.outcome != "started")
        return list(session.scalars(query))


def attempts_completed(env, rows: list[AuditEvent]) -> bool:
    """Every row of an attempt (search, export, enrolment, withdrawal) has its ``started`` row before it."""
    starts = {r.details.get("attempt"): r.id for r in audit_rows(env, started=True) if r.outcome == "started"}
    attempted = [r for r in rows if "attempt" in r.details]
    return bool(attempted) and all(starts.get(r.details["attempt"], r.id) < r.id for r in attempted)


def open_case(env, case_id: str, photo: bytes, **consent_changes):
    """Through the API as an admin: create the case, record the consent, enrol the photo (its response),
    then assign the case to the reviewer's key (a reviewer sees only the cases assigned to them)."""
    client, admin = env["client"], auth(env, "admin")
    response = client.post("/cases", json={"id": case_id, "display_name": "Client P."}, headers=admin)
    assert response.status_code == 201, response.text
    response = client.post(f"/cases/{case_id}/consent", json=consent(**consent_changes), headers=admin)
    assert response.status_code == 201, response.text
    enrolled = client.post(f"/cases/{case_id}/photos", files=[("photos", ("paul.jpg", photo, "image/jpeg"))],
                           headers=admin)
    assigned = client.put(f"/cases/{case_id}/assignments/test-reviewer", headers=admin)
    assert assigned.status_code == 200, assigned.text
    return enrolled


@pytest.fixture(scope="module")
def enrolled(env):
    photo = (env["testdata"] / "faces" / "paul_rudd.jpg").read_bytes()
    response = open_case(env, CASE, photo)
    assert response.status_code == 201, response.text
    assert response.json()["retro_matches"] == 0  # nothing indexed yet
    return photo


@pytest.fixture(scope="module")
def streamed(env, enrolled):
    """Publish an edited re-upload of the enrolled photo and run the pipeline; then an exact copy of it."""
    s = env["settings"]
    portrait = Image.open(io.BytesIO(enrolled)).convert("RGB")
    reupload = jpeg(edits.border(edits.crop(portrait, 0.2), 0.05), 80)
    sample = sample_sets.Sample("paul_reupload", reupload, "image/jpeg", "faces:1")
    published = time.time()
    publish(s, [sample], "live")
    run_pipeline(s, s.kafka.consumer_group)
    with env["work"].sessions() as session:
        matches = list(session.scalars(select(Match).where(Match.case_id == CASE)))
    copy = sample_sets.Sample("paul_reupload_again", reupload, "image/jpeg", "sighting:exact")
    publish(s, [copy], "again")
    run_pipeline(s, s.kafka.consumer_group)
    return {"matches": matches, "published": published}


def test_an_edited_reupload_is_matched_in_the_stream_and_announced(env, streamed):
    matches = streamed["matches"]
    assert len(matches) == 1
    match = matches[0]
    assert match.status == "pending_review" and match.source == "stream"
    assert match.similarity >= env["work"].encoder_for().spec.match_threshold
    delay = (match.created_at - match.scraped_at).total_seconds()
    print(f"time from the event on media.scraped to the match in the database: {delay:.1f} s "
          "(pipeline start-up included)")
    events = [e for e in read_topic(env["settings"], env["settings"].kafka.topics.matches.name)
              if e["case_id"] == CASE]
    assert [e["kind"] for e in events].count("match") == 1
    assert events[0]["match_id"] == match.id and events[0]["face_id"] == match.face_id


def test_an_exact_copy_of_matched_media_is_linked_to_the_match_not_a_new_one(env, streamed):
    with env["work"].sessions() as session:
        matches = list(session.scalars(select(Match).where(Match.case_id == CASE)))
    assert len(matches) == 1 and matches[0].last_seen_at is not None
    events = [e for e in read_topic(env["settings"], env["settings"].kafka.topics.matches.name)
              if e["case_id"] == CASE]
    sightings = [e for e in events if e["kind"] == "sighting"]
    assert len(sightings) == 1 and sightings[0]["media_id"] == "again:paul_reupload_again"


def test_search_with_the_photo_returns_the_match_at_rank_1_with_its_sightings(env, enrolled, streamed):
    response = env["client"].post("/search", files={"photo": ("paul.jpg", enrolled, "image/jpeg")},
                                  params={"top_k": 5}, headers=auth(env, "reviewer"))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results and results[0]["face_id"] == streamed["matches"][0].face_id
    assert env["work"].encoder_for().spec.match_threshold <= results[0]["similarity"] <= 1.0
    assert results[0]["crop_url"].startswith("http://127.0.0.1:9000/") and "X-Amz-Expires=300" in results[0]["crop_url"]
    assert {s["media_id"] for s in results[0]["sightings"]} == {"live:paul_reupload", "again:paul_reupload_again"}
    first = results[0]["sightings"][0]  # oldest first: the upload the pipeline indexed
    assert first["media_id"] == "live:paul_reupload" and first["match"] == "original"
    assert first["source_url"] == "https://example.test/live/paul_reupload" and first["platform"] == "example"
    assert first["scraped_at"].endswith("Z") and results[0]["sightings"][1]["match"] == "exact"

    def face_ids(**params) -> list[int]:
        found = env["client"].post("/search", files={"photo": ("paul.jpg", enrolled, "image/jpeg")},
                                   params={"top_k": 5, **params}, headers=auth(env, "reviewer"))
        assert found.status_code == 200, found.text
        return [hit["face_id"] for hit in found.json()["results"]]

    face = results[0]["face_id"]
    assert face in face_ids(platform="example") and face not in face_ids(platform="elsewhere")
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    assert face in face_ids(posted_to=tomorrow) and face not in face_ids(posted_from=tomorrow)
    assert face_ids(top_k=1, offset=1) == [hit["face_id"] for hit in results[1:2]]  # paging
    by_case = env["client"].post("/search", data={"case_id": CASE}, headers=auth(env, "reviewer"))
    assert by_case.status_code == 200 and by_case.json()["results"][0]["face_id"] == results[0]["face_id"]
    rows = audit_rows(env, action="search", actor="test-reviewer")
    assert rows[-1].case_id == CASE and rows[-1].target == f"case:{CASE}" and rows[-1].outcome == "ok"
    assert all(row.target.startswith("photo:") for row in rows[-7:-1])  # this test's six photo searches
    assert rows[-7].result_count == len(results)
    assert attempts_completed(env, rows)  # each search's started row was committed before it ran


def test_without_a_key_401_with_the_wrong_role_403_and_every_call_is_audited(env, enrolled):
    client = env["client"]
    before = len(audit_rows(env))
    assert client.get(f"/cases/{CASE}").status_code == 401
    assert client.get(f"/cases/{CASE}", headers={"Authorization": "Bearer mmk_forged"}).status_code == 401
    response = client.post("/cases", json={"id": "x", "display_name": "x"}, headers=auth(env, "reviewer"))
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    assert client.get("/audit", headers=auth(env, "reviewer")).status_code == 403
    assert client.get(f"/cases/{CASE}", headers=auth(env, "reviewer")).status_code == 200
    audit = client.get("/audit", params={"limit": 10}, headers=auth(env, "auditor"))
    assert audit.status_code == 200
    rows = audit_rows(env)[before:]
    assert [(r.actor, r.outcome) for r in rows] == [
        ("anonymous", "denied"), ("anonymous", "denied"), ("test-reviewer", "denied"), ("test-reviewer", "denied"),
        ("test-reviewer", "ok"), ("test-auditor", "ok")]
    assert rows[4].action == "view_case" and rows[4].case_id == CASE
    assert rows[5].action == "read_audit" and rows[5].result_count == 10


def test_opening_a_case_recording_consent_and_enrolling_are_audited(env, enrolled):
    rows = audit_rows(env, case_id=CASE)[:3]  # the enrolled fixture's three calls came first
    assert [(r.actor, r.role, r.action, r.outcome) for r in rows] == [
        ("test-admin", "admin", "create_case", "ok"), ("test-admin", "admin", "record_consent", "ok"),
        ("test-admin", "admin", "enroll", "ok")]
    assert rows[1].details["scope"] == ["search", "watchlist", "takedown"]
    assert rows[2].details["photos"] == 1 and rows[2].result_count == 0  # no retro match: nothing indexed yet
    assert all("embedding" not in json.dumps(r.details) for r in rows)
    assert attempts_completed(env, rows[2:])  # enrolment stores vectors outside the database: started first


def test_bad_input_gets_a_clear_4xx(env, enrolled):
    client, admin, testdata = env["client"], auth(env, "admin"), env["testdata"]
    group = (testdata / "faces" / "multiface.jpg").read_bytes()
    blank = jpeg(Image.new("RGB", (400, 400), (200, 180, 160)))
    rejected_before = len(audit_rows(env, outcome="rejected"))

    def photos(case: str, name: str, data: bytes, content_type: str = "image/jpeg"):
        return client.post(f"/cases/{case}/photos", files=[("photos", (name, data, content_type))], headers=admin)

    cases = {
        "wrong content type": (photos(CASE, "a.txt", b"hello", "text/plain"), 415, "unsupported_media_type"),
        "oversized": (photos(CASE, "big.jpg", b"\xff" * (env["settings"].api.max_upload_bytes + 1)), 413, "too_large"),
        "no face": (photos(CASE, "blank.jpg", blank), 422, "no_face"),
        "several faces": (photos(CASE, "group.jpg", group), 422, "several_faces"),
        "corrupt": (photos(CASE, "bad.jpg", b"\xff\xd8\xff\xe0 not really"), 422, "corrupt_image"),
        "unknown case": (photos("nobody", "paul.jpg", enrolled), 404, "unknown_case"),
        "bad consent": (client.post(f"/cases/{CASE}/consent", json=consent(scope=[]), headers=admin), 422,
                        "invalid_request"),
    }
    client.post("/cases", json={"id": "expired", "display_name": "E."}, headers=admin)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    client.post("/cases/expired/consent", json=consent(given_at=(past - dt.timedelta(days=1)).isoformat(),
                                                       expires_at=past.isoformat()), headers=admin)
    cases["expired consent"] = (photos("expired", "paul.jpg", enrolled), 409, "consent_expired")
    for name, (response, status, reason) in cases.items():
        assert response.status_code == status, (name, response.text)
        body = response.json()
        assert body["error"] == reason, (name, body)
        assert "Traceback" not in response.text and body["detail"], name
    # Every refusal audited exactly once, under the caller's name (the requests above ran in this order).
    refusals = [(row.actor, row.details["reason"]) for row in audit_rows(env, outcome="rejected")][-len(cases):]
    assert sorted(refusals) == sorted(("test-admin", reason) for _response, _status, reason in cases.values())
    assert len(audit_rows(env, outcome="rejected")) == rejected_before + len(cases)


def test_consent_scope_decides_enrolment_search_and_retro_matches(env, enrolled, streamed):
    """Takedown-only consent stores no vectors; watchlist-only allows no search of the past; search finds it."""
    client, admin = env["client"], auth(env, "admin")
    refused = open_case(env, "takedown-only", enrolled, scope=["takedown"])
    assert refused.status_code == 409 and refused.json()["error"] == "consent_out_of_scope", refused.text
    assert EnrolledFaces(env["settings"]).count("takedown-only") == 0

    watched = open_case(env, "watch-only", enrolled, scope=["watchlist"])
    assert watched.status_code == 201 and watched.json()["retro_matches"] == 0  # no consent to search the past
    search = client.post("/search", data={"case_id": "watch-only"}, headers=auth(env, "reviewer"))
    assert search.status_code == 409 and search.json()["error"] == "consent_out_of_scope"
    assert audit_rows(env, case_id="watch-only", action="search")[-1].outcome == "rejected"

    # The edited re-upload was indexed before this enrolment: the retro search finds it.
    found = open_case(env, "retro", enrolled, scope=["search"])
    assert found.status_code == 201 and found.json()["retro_matches"] == 1, found.text
    with env["work"].sessions() as session:
        match = session.scalars(select(Match).where(Match.case_id == "retro")).one()
    assert match.source == "retro" and match.status == "pending_review"
    assert match.face_id == streamed["matches"][0].face_id
    for case_id in ("takedown-only", "watch-only", "retro"):
        assert client.delete(f"/cases/{case_id}", headers=admin).status_code == 200


def test_export_for_takedown_lists_confirmed_matches_with_every_url_and_is_audited(env, streamed):
    client = env["client"]
    match_id = streamed["matches"][0].id
    assert client.get(f"/cases/{CASE}/export", headers=auth(env, "reviewer")).json()["matches"] == []
    reviewed = client.post(f"/matches/{match_id}/review", json={"status": "confirmed"}, headers=auth(env, "reviewer"))
    assert reviewed.status_code == 200 and reviewed.json()["reviewed_by"] == "test-reviewer"
    response = client.get(f"/cases/{CASE}/export", headers=auth(env, "reviewer"))
    assert response.status_code == 200, response.text
    [item] = response.json()["matches"]
    assert item["match_id"] == match_id and item["status"] == "confirmed"
    assert [s["source_url"] for s in item["sightings"]] == [
        "https://example.test/live/paul_reupload", "https://example.test/again/paul_reupload_again"]
    assert "crop" not in response.text and "embedding" not in response.text  # URLs only, no images or vectors
    row = audit_rows(env, action="export", case_id=CASE)[-1]
    assert row.actor == "test-reviewer" and row.result_count == 1 and row.details["urls"] == 2
    assert client.get(f"/cases/{CASE}/export", headers=auth(env, "auditor")).status_code == 403


def test_a_revoked_key_is_refused(env):
    client, admin = env["client"], auth(env, "admin")
    created = client.post("/keys", json={"name": "temp-reviewer", "role": "reviewer"}, headers=admin)
    assert created.status_code == 201
    temp = {"Authorization": f"Bearer {created.json()['key']}"}
    assert client.get("/matches", headers=temp).status_code == 200
    assert client.delete("/keys/temp-reviewer", headers=admin).json() == {"name": "temp-reviewer", "revoked": 1}
    assert client.get("/matches", headers=temp).status_code == 401
    assert client.delete("/keys/temp-reviewer", headers=admin).status_code == 404
    assert [row.action for row in audit_rows(env, target="key:temp-reviewer")] == ["create_key", "revoke_key"]


def test_withdrawal_deletes_the_case_from_every_store_and_keeps_a_tombstone(env, enrolled, streamed):
    s, work = env["settings"], env["work"]
    bucket = s.minio.buckets.references.name
    objects = object_client(s)
    assert EnrolledFaces(s).count(CASE) == 1
    # The photo, its crop and the per-case model's weights (issue 20: trained after the confirm).
    assert len(list(objects.list_objects(bucket, prefix=f"cases/{CASE}/", recursive=True))) == 3

    with work.sessions() as session:
        takedown_ids = list(session.scalars(select(Takedown.id).where(Takedown.case_id == CASE)))
    response = env["client"].delete(f"/cases/{CASE}", headers=auth(env, "admin"))
    assert response.status_code == 200, response.text
    # The confirmed match's two URLs became takedowns (issue 19): closed now, their URLs deleted.
    assert response.json() == {"case_id": CASE, "vectors": 1, "objects": 3, "photos": 1, "matches": 1,
                               "takedowns": 2}

    enrolled = EnrolledFaces(s).collection  # the whole collection, not only the case's (dropped) partition
    assert enrolled.query(f'case_id == "{CASE}"', output_fields=["enrolled_id"], consistency_level="Strong") == []
    assert list(objects.list_objects(bucket, prefix=f"cases/{CASE}/", recursive=True)) == []
    with work.sessions() as session:
        for table in (Case, Consent, EnrolledPhoto, Match):
            column = table.id if table is Case else table.case_id
            assert list(session.scalars(select(table).where(column == CASE))) == [], table.__name__
    with work.sessions() as session:
        closed = list(session.scalars(select(Takedown).where(Takedown.id.in_(takedown_ids))))
        assert [(t.state, t.page_url, t.case_id) for t in closed] == [("closed", None, None)] * 2
    tombstone = audit_rows(env, action="withdraw", case_id=CASE)[-1]
    assert tombstone.outcome == "ok" and "embedding" not in json.dumps(tombstone.details)
    assert env["client"].get(f"/cases/{CASE}", headers=auth(env, "admin")).status_code == 404


# -- the OpenAPI schema, fuzzed -------------------------------------------------------------------
def test_schemathesis_finds_no_server_error(env):
    """Every operation of the served schema, with generated input, under each role's key and without one."""
    response = env["client"].get("/openapi.json")
    assert response.status_code == 200 and response.json()["info"]["title"] == "mimamori"
    schema = schemathesis.openapi.from_asgi("/openapi.json", env["client"].app)
    keys = (auth(env, "admin"), auth(env, "reviewer"), auth(env, "auditor"), {})
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    def fuzz(operation) -> None:
        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=8, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        def never_a_server_error(case) -> None:
            for headers in keys:
                response = case.call(headers=headers)
                assert response.status_code < 500, (operation.label, response.status_code, response.text[:300])

        never_a_server_error()

    for operation in operations:
        fuzz(operation)


def test_the_cli_enrols_searches_and_withdraws(env, streamed, tmp_path, capsys):
    """The same actions from the CLI (as cli:<user>, audited), on the same stores."""
    import yaml

    from mimamori.cli.main import main

    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(env["settings"].model_dump(mode="json")))
    record = tmp_path / "consent.yaml"
    record.write_text(yaml.safe_dump(consent()))
    photo = env["testdata"] / "faces" / "shea_whigham.jpg"
    group = env["testdata"] / "faces" / "multiface.jpg"
    cli = ["--config", str(site)]
    assert main([*cli, "cases", "create", "cli-case", "--name", "Client S."]) == 0
    assert main([*cli, "enroll", "--case", "cli-case", str(photo)]) == 2  # no consent yet
    assert "consent" in capsys.readouterr().err
    assert main([*cli, "enroll", "--case", "cli-case", "--consent", str(record), str(group)]) == 2
    assert "faces found" in capsys.readouterr().err
    assert main([*cli, "enroll", "--case", "cli-case", str(photo)]) == 0  # the consent above was recorded
    assert "1 photo(s) enrolled" in capsys.readouterr().out
    assert main([*cli, "search", str(photo), "--top-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert isinstance(hits, list)  # this portrait was never published: whatever is closest, ranked
    export = tmp_path / "takedown.json"
    assert main([*cli, "export", "--case", "cli-case", "--status", "all", "--output", str(export)]) == 0
    assert json.loads(export.read_text())["matches"] == [] and export.stat().st_mode & 0o777 == 0o600
    capsys.readouterr()
    assert main([*cli, "cases", "withdraw", "cli-case", "--yes"]) == 0
    assert "1 vectors" in capsys.readouterr().out
    rows = audit_rows(env, case_id="cli-case")
    actions = [(row.action, row.outcome) for row in rows]
    assert actions[0] == ("create_case", "ok") and ("enroll", "rejected") in actions
    assert ("export", "ok") in actions
    assert actions[-1] == ("withdraw", "ok") and all(row.actor.startswith("cli:") for row in rows)


def test_an_enrolled_face_is_found_by_a_search_made_right_after_its_write_was_noted(stack, settings):
    """``EnrolledFaces.nearest`` with the moment the write was noted (a guarantee timestamp, not Strong
    consistency) sees the face at once, as the watchlist must right after an enrolment."""
    import numpy as np

    with isolated_settings(settings) as s:
        faces = EnrolledFaces(s)
        faces.clock_skew_s = 0.0  # the noted moment itself, not a second after it (one host, one clock)
        [dim] = [f.params["dim"] for f in faces.collection.schema.fields if f.name == "embedding"]
        for i in range(3):  # each time a new face, searched for at once
            vector = np.eye(dim, dtype=np.float32)[i]
            faces.add(CASE, f"{i:064x}", "test/v1", vector)
            noted = dt.datetime.now(dt.UTC)
            [hits] = faces.nearest(vector[None, :], 1, [CASE], noted)
            assert [(h.photo_sha256, round(h.similarity, 4)) for h in hits] == [(f"{i:064x}", 1.0)]
