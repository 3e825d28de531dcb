"""The service layer on SQLite and in-memory stores: every case action, its checks and its audit.

Both front doors call these functions; what they decide (refusals, consent, whole-or-nothing
enrolment, audit rows) is tested here once, fast, without Milvus, MinIO or a face model.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.core.errors import (
    CaseExists,
    ConsentMissing,
    Forbidden,
    InvalidInput,
    NotFound,
    PhotoRejected,
    UnknownCase,
)
from mimamori.services import access, audit, cases, collections, enrolment, export, keys, matches, replay, search
from mimamori.services.audit import Actor
from mimamori.services.auth import authenticate
from mimamori.services.consent import ConsentRecord, record_consent, require_consent
from mimamori.stores.cases import ApiKey, AuditEvent, EnrolledPhoto, Match
from mimamori.stores.face_search import Sighting
from tests.support.workspace import IndexedFace, MemoryWorkspace, consent_record, photo_of, unit

ADMIN, REVIEWER = Actor("ada", "admin"), Actor("rei", "reviewer")
CLIENT, GROUP, BLANK, OTHER = (200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)
NOW = dt.datetime.now(dt.UTC)


def consent(**changes) -> ConsentRecord:
    return ConsentRecord.model_validate(consent_record(**changes))


@pytest.fixture
def work(tmp_path):
    """Photos: CLIENT shows one face, GROUP two, BLANK none; the index holds the client twice and a stranger."""
    faces = {CLIENT: [unit(1, 0)], GROUP: [unit(1, 0), unit(0, 1)], BLANK: [], OTHER: [unit(0, 0, 1)]}
    seen = [Sighting("m-1", "https://host.example/a.jpg", "https://host.example/page", "web", None, None, "original")]
    indexed = [IndexedFace(11, "a" * 64, unit(1, 0.05), sightings=seen), IndexedFace(12, "b" * 64, unit(1, 0.1)),
               IndexedFace(13, "c" * 64, unit(0, 1))]
    return MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", faces, indexed)


def rows(work, **where) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id)
    for name, value in where.items():
        query = query.where(getattr(AuditEvent, name) == value)
    with work.sessions() as session:
        return list(session.scalars(query))


def open_case(work, case_id: str = "c1", **consent_changes) -> None:
    """The case with a consent record, assigned to the reviewer."""
    cases.create_case(work, ADMIN, case_id, "Client C.")
    record_consent(work, ADMIN, case_id, consent(**consent_changes))
    assign_reviewer(work, case_id)


def assign_reviewer(work, case_id: str) -> None:
    """REVIEWER works on the case (as the holder of a key of that name)."""
    with work.sessions() as session:
        if session.scalars(select(ApiKey).where(ApiKey.name == REVIEWER.name)).first() is None:
            keys.create_key(work, ADMIN, REVIEWER.name, "reviewer")
    access.assign(work, ADMIN, case_id, REVIEWER.name)


def test_a_case_is_created_once_and_viewing_it_is_audited(work):
    created = cases.create_case(work, ADMIN, "c1", "Client C.", 0.9)
    assert (created.id, created.threshold_model, created.photos, created.consent_in_force) == \
        ("c1", work.model, 0, False)
    with pytest.raises(CaseExists):
        cases.create_case(work, ADMIN, "c1", "again")
    with pytest.raises(UnknownCase):
        cases.view_case(work, ADMIN, "nobody")
    with pytest.raises(Forbidden) as refused:
        cases.view_case(work, REVIEWER, "c1")  # not assigned: refused like a case that does not exist
    assert refused.value.reason == "not_assigned"
    assign_reviewer(work, "c1")
    assert cases.view_case(work, REVIEWER, "c1").display_name == "Client C."
    assert [(r.action, r.actor, r.outcome) for r in rows(work) if r.action != "create_key"] == [
        ("create_case", "ada", "ok"), ("create_case", "ada", "rejected"), ("view_case", "ada", "rejected"),
        ("view_case", "rei", "rejected"), ("assign", "ada", "ok"), ("view_case", "rei", "ok")]


def test_consent_refusals_say_what_to_fix(work):
    cases.create_case(work, ADMIN, "c1", "C.")
    with work.sessions() as session, pytest.raises(ConsentMissing) as missing:
        require_consent(session, "c1", ("search",), "searching")
    assert missing.value.reason == "consent_missing"
    record_consent(work, ADMIN, "c1", consent(given_at=NOW - dt.timedelta(days=9), expires_at=NOW - dt.timedelta(1)))
    with work.sessions() as session, pytest.raises(ConsentMissing) as expired:
        require_consent(session, "c1", ("search",), "searching")
    assert expired.value.reason == "consent_expired"
    record_consent(work, ADMIN, "c1", consent(scope=["takedown"]))
    with work.sessions() as session:
        with pytest.raises(ConsentMissing) as out_of_scope:
            require_consent(session, "c1", ("search", "watchlist"), "enrolling")
        assert out_of_scope.value.reason == "consent_out_of_scope"
        assert require_consent(session, "c1", ("takedown",), "exporting").scope == ["takedown"]


def test_enrolment_needs_consent_and_is_refused_once_in_the_audit(work):
    cases.create_case(work, ADMIN, "c1", "C.")
    with pytest.raises(ConsentMissing):
        enrolment.enroll(work, ADMIN, "c1", [("p.jpg", photo_of(CLIENT), "image/jpeg")])
    refused = rows(work, action="enroll")
    assert [(r.outcome, r.details["reason"]) for r in refused] == [("rejected", "consent_missing")]
    assert work.enrolled.count("c1") == 0 and not work.memory_objects.objects


def test_enrolment_stores_photo_crop_vector_and_row_and_finds_the_past(work):
    open_case(work)
    result = enrolment.enroll(work, ADMIN, "c1", [("p.jpg", photo_of(CLIENT), "image/jpeg")])
    assert len(result.photos) == 1 and result.retro_matches == 2  # faces 11 and 12, not the stranger 13
    stored = work.memory_objects.keys(work.settings.minio.buckets.references.name)
    assert sorted(key.split("/")[2] for key in stored) == ["crops", "photos"]
    assert work.enrolled.count("c1") == 1
    with work.sessions() as session:
        assert session.scalars(select(EnrolledPhoto)).one().enrolled_by == "ada"
        assert sorted(m.face_id for m in session.scalars(select(Match))) == [11, 12]
    again = enrolment.enroll(work, ADMIN, "c1", [("p.jpg", photo_of(CLIENT), "image/jpeg")])
    assert again.retro_matches == 0 and work.enrolled.count("c1") == 1  # nothing twice
    with work.sessions() as session:
        assert len(list(session.scalars(select(EnrolledPhoto)))) == 1


@pytest.mark.parametrize("colour, data, reason", [
    (GROUP, None, "several_faces"), (BLANK, None, "no_face"), (None, b"\xff\xd8\xff\xe0 not really", "corrupt_image")])
def test_a_request_is_enrolled_whole_or_not_at_all(work, colour, data, reason):
    open_case(work)
    bad = data if data is not None else photo_of(colour)
    with pytest.raises(PhotoRejected) as refused:
        enrolment.enroll(work, ADMIN, "c1", [("good.jpg", photo_of(CLIENT), "image/jpeg"),
                                             ("bad.jpg", bad, "image/jpeg")])
    assert refused.value.reason == reason and "bad.jpg" in str(refused.value)
    assert work.enrolled.count("c1") == 0 and not work.memory_objects.objects
    assert rows(work, action="enroll")[-1].details["reason"] == reason


def test_watchlist_only_consent_enrols_without_searching_the_past(work):
    open_case(work, scope=["watchlist"])
    assert enrolment.enroll(work, ADMIN, "c1", [("p.jpg", photo_of(CLIENT), "image/jpeg")]).retro_matches == 0
    with pytest.raises(ConsentMissing) as refused:
        search.search_faces(work, REVIEWER, case_id="c1")
    assert refused.value.reason == "consent_out_of_scope"


def test_search_by_photo_and_by_case_ranked_and_audited(work):
    open_case(work)
    enrolment.enroll(work, ADMIN, "c1", [("p.jpg", photo_of(CLIENT), "image/jpeg")])
    by_photo = search.search_faces(work, REVIEWER, photo=("q.jpg", photo_of(CLIENT), "image/jpeg"),
                                   filters=search.SearchFilters(top_k=2))
    assert [hit.face_id for hit in by_photo] == [11, 12]
    assert by_photo[0].sightings[0].page_url == "https://host.example/page"
    by_case = search.search_faces(work, REVIEWER, case_id="c1", filters=search.SearchFilters(top_k=1, offset=1))
    assert [hit.face_id for hit in by_case] == [12]
    searched = rows(work, action="search")
    assert [(r.target.split(":")[0], r.result_count, r.outcome) for r in searched] == \
        [("photo", None, "started"), ("photo", 2, "ok"), ("case", None, "started"), ("case", 1, "ok")]
    # Each completing row names the attempt its "started" row began, committed before Milvus was asked.
    assert [r.details["attempt"] for r in searched[::2]] == [r.details["attempt"] for r in searched[1::2]]


def test_search_refusals_are_audited_once(work):
    for actor, photo, case_id, reason in [(REVIEWER, None, None, "photo_or_case"),
                                          (REVIEWER, ("q.jpg", photo_of(BLANK), "image/jpeg"), None, "no_face"),
                                          (REVIEWER, None, "nobody", "not_assigned"),
                                          (ADMIN, None, "nobody", "unknown_case")]:
        with pytest.raises((InvalidInput, NotFound, Forbidden)) as refused:
            search.search_faces(work, actor, photo=photo, case_id=case_id)
        assert refused.value.reason == reason and refused.value.audited
    naive = search.SearchFilters(posted_from=dt.datetime(2026, 1, 1))
    with pytest.raises(InvalidInput, match="time zone"):
        search.search_faces(work, REVIEWER, photo=("q.jpg", photo_of(CLIENT), "image/jpeg"), filters=naive)
    assert [r.details["reason"] for r in rows(work, action="search")] == \
        ["photo_or_case", "no_face", "not_assigned", "unknown_case", "naive_time"]


def test_matches_are_listed_reviewed_and_exported_with_their_urls(work):
    open_case(work)
    enrolment.enroll(work, ADMIN, "c1", [("p.jpg", photo_of(CLIENT), "image/jpeg")])
    pending = matches.list_matches(work, REVIEWER, case_id="c1", status="pending_review")
    assert sorted(m.face_id for m in pending) == [11, 12]
    decided = matches.review(work, REVIEWER, pending[0].id, "confirmed")
    assert (decided.status, decided.reviewed_by) == ("confirmed", "rei")
    with pytest.raises(NotFound):
        matches.review(work, REVIEWER, 999_999, "rejected")
    document = export.export_case(work, REVIEWER, "c1")
    assert [m["match_id"] for m in document["matches"]] == [decided.id]
    urls = [s["source_url"] for m in document["matches"] for s in m["sightings"]]
    assert urls == (["https://host.example/a.jpg"] if decided.face_id == 11 else [])
    assert "vector" not in str(document) and "crop" not in str(document)
    assert len(export.export_case(work, REVIEWER, "c1", None)["matches"]) == 2
    assert [(r.action, r.outcome) for r in rows(work, actor="rei")] == [
        ("view_matches", "ok"), ("review", "ok"), ("review", "rejected"), ("export", "started"), ("export", "ok"),
        ("export", "started"), ("export", "ok")]


def test_export_needs_takedown_consent(work):
    open_case(work, scope=["search"])
    with pytest.raises(ConsentMissing) as refused:
        export.export_case(work, REVIEWER, "c1")
    assert refused.value.reason == "consent_out_of_scope"
    assert rows(work, action="export")[-1].outcome == "rejected"


def test_withdrawal_deletes_vectors_objects_and_rows_and_keeps_a_tombstone(work):
    open_case(work)
    enrolment.enroll(work, ADMIN, "c1", [("p.jpg", photo_of(CLIENT), "image/jpeg")])
    report = cases.withdraw(work, ADMIN, "c1")
    assert (report.vectors, report.objects, report.photos, report.matches) == (1, 2, 1, 2)
    assert work.enrolled.count("c1") == 0
    assert not work.memory_objects.keys(work.settings.minio.buckets.references.name)
    with work.sessions() as session:
        assert session.scalars(select(Match)).first() is None
    tombstone = rows(work, action="withdraw")[-1]
    assert tombstone.case_id == "c1" and tombstone.details["vectors"] == 1
    with pytest.raises(UnknownCase):
        cases.withdraw(work, ADMIN, "c1")


def test_keys_are_created_revoked_and_audited(work):
    key = keys.create_key(work, ADMIN, "robot", "reviewer")
    assert authenticate(work.sessions, key) == Actor("robot", "reviewer")
    assert keys.revoke_key(work, ADMIN, "robot") == 1
    assert authenticate(work.sessions, key) is None
    with pytest.raises(NotFound):
        keys.revoke_key(work, ADMIN, "robot")
    with pytest.raises(InvalidInput):
        keys.create_key(work, ADMIN, "robot", "root")
    assert [(r.action, r.outcome) for r in rows(work)] == [
        ("create_key", "ok"), ("revoke_key", "ok"), ("revoke_key", "rejected"), ("create_key", "rejected")]
    assert key not in str([r.details for r in rows(work)])


def test_reading_the_audit_log_is_audited(work):
    cases.create_case(work, ADMIN, "c1", "C.")
    auditor = Actor("aud", "auditor")
    assert [r.action for r in audit.read_audit(work.sessions, auditor, case_id="c1")] == ["create_case"]
    assert rows(work)[-1].action == "read_audit" and rows(work)[-1].result_count == 1


@pytest.mark.parametrize("faces, current, media, current_media, reason", [
    (0, "dlib-resnet", 0, 0, "collection_empty"),
    (5, "dlib-resnet", 1, 2, "backfill_incomplete"),
    (5, "dlib-resnet", 2, 2, None),
    (5, "facenet-vggface2", 0, 9, None),  # promoting the model search reads already: no backfill to compare
])
def test_the_promotion_policy(faces, current, media, current_media, reason):
    refusal = collections.promotion_refusal("facenet-vggface2", "faces_facenet_vggface2_v1", faces, current, media,
                                            current_media)
    assert (refusal.reason if refusal else None) == reason


def test_a_replay_is_planned_on_a_copy_of_the_settings_and_summed_up():
    settings = load_settings("local")
    with pytest.raises(InvalidInput, match="unknown embedder"):
        replay.prepare_replay(settings, replay.ReplayRequest(NOW, NOW, model="nobody"))
    line = replay.describe_totals({"media.indexed": 3, "media.sighting_exact": 1, "faces": 4,
                                   "dead_letters.corrupt_image": 2})
    assert line == "replay done: 4 media (1 sightings), 4 faces written, 2 dead letters {'corrupt_image': 2}"
