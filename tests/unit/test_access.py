"""Access by case on SQLite and in-memory stores: who sees which case, and who assigns them.

A reviewer sees only the cases assigned to them (viewing, exporting, searching by case; a
search by photo shows only their cases' matched faces); admins and the CLI's operator see
every case; an auditor no case content. Assignments are an admin's, and audited.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.core.errors import Forbidden, NotFound, UnknownCase
from mimamori.services import access, cases, enrolment, export, keys, search, users
from mimamori.services.audit import Actor
from mimamori.services.consent import ConsentRecord, record_consent
from mimamori.stores.cases import AuditEvent
from tests.support.workspace import IndexedFace, MemoryWorkspace, consent_record, photo_of, unit

ADMIN, OPERATOR = Actor("ada", "admin"), Actor("cli:root", "operator")
REI, KEN, AUDITOR = Actor("rei", "reviewer"), Actor("ken", "reviewer"), Actor("aud", "auditor")
ANN, BOB = (200, 40, 40), (40, 200, 40)  # two clients' photos


@pytest.fixture
def work(tmp_path):
    """Two cases: c1 (Ann, faces 11 and 12 indexed) and c2 (Bob, face 21); face 31 is nobody's."""
    faces = {ANN: [unit(1, 0)], BOB: [unit(0, 1)]}
    indexed = [IndexedFace(11, "a" * 64, unit(1, 0.05)), IndexedFace(12, "b" * 64, unit(1, 0.1)),
               IndexedFace(21, "c" * 64, unit(0.05, 1)), IndexedFace(31, "d" * 64, unit(1, 0.6))]
    work = MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", faces, indexed)
    for case_id, colour in (("c1", ANN), ("c2", BOB)):
        cases.create_case(work, ADMIN, case_id, "Client")
        record_consent(work, ADMIN, case_id, ConsentRecord.model_validate(consent_record()))
        enrolment.enroll(work, ADMIN, case_id, [("p.jpg", photo_of(colour), "image/jpeg")])
    users.create_user(work, ADMIN, "rei", "reviewer")
    keys.create_key(work, ADMIN, "ken", "reviewer")  # a key holder is staff too
    return work


def rows(work, **where) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id)
    for name, value in where.items():
        query = query.where(getattr(AuditEvent, name) == value)
    with work.sessions() as session:
        return list(session.scalars(query))


def visible(work, actor: Actor) -> set[str] | None:
    with work.sessions() as session:
        return access.visible_case_ids(session, actor)


def test_admins_assign_cases_to_staff_and_it_is_audited(work):
    access.assign(work, ADMIN, "c1", "rei")
    access.assign(work, ADMIN, "c1", "rei")  # once is enough: assigning again changes nothing
    access.assign(work, OPERATOR, "c2", "ken")
    for actor, case_id, name, kind, reason in [(REI, "c2", "rei", Forbidden, "forbidden"),
                                               (ADMIN, "nope", "rei", UnknownCase, "unknown_case"),
                                               (ADMIN, "c1", "nobody", NotFound, "unknown_user")]:
        with pytest.raises(kind) as refused:
            access.assign(work, actor, case_id, name)
        assert refused.value.reason == reason and refused.value.audited
    assert [(a.case_id, a.username, a.assigned_by) for a in access.assignments(work, ADMIN)] == [
        ("c1", "rei", "ada"), ("c2", "ken", "cli:root")]
    assert [a.username for a in access.assignments(work, AUDITOR, "c2")] == ["ken"]
    assert [a.case_id for a in access.assignments(work, REI)] == ["c1"]  # a reviewer sees their own
    assert [u.cases for u in users.list_users(work, ADMIN)] == [["c1"]]
    access.unassign(work, ADMIN, "c1", "rei")
    with pytest.raises(NotFound) as missing:
        access.unassign(work, ADMIN, "c1", "rei")
    assert missing.value.reason == "unknown_assignment"
    with pytest.raises(Forbidden):
        access.unassign(work, KEN, "c2", "ken")
    assert [(r.action, r.case_id, r.target, r.outcome) for r in rows(work) if "assign" in r.action] == [
        ("assign", "c1", "user:rei", "ok"), ("assign", "c1", "user:rei", "ok"), ("assign", "c2", "user:ken", "ok"),
        ("assign", "c2", "user:rei", "rejected"), ("assign", "nope", "user:rei", "rejected"),
        ("assign", "c1", "user:nobody", "rejected"), ("view_assignments", None, None, "ok"),
        ("view_assignments", "c2", None, "ok"), ("view_assignments", None, None, "ok"),
        ("unassign", "c1", "user:rei", "ok"), ("unassign", "c1", "user:rei", "rejected"),
        ("unassign", "c2", "user:ken", "rejected")]


def test_each_role_sees_its_cases(work):
    access.assign(work, ADMIN, "c1", "rei")
    assert visible(work, ADMIN) is None and visible(work, OPERATOR) is None
    assert visible(work, REI) == {"c1"} and visible(work, KEN) == set() and visible(work, AUDITOR) == set()
    with work.sessions() as session:
        access.require_case_access(session, REI, "c1")
        for actor, case_id in [(REI, "c2"), (REI, "no-such-case"), (AUDITOR, "c1")]:
            with pytest.raises(Forbidden) as refused:
                access.require_case_access(session, actor, case_id)
            assert refused.value.reason == "not_assigned" and case_id in str(refused.value)


def test_a_reviewer_views_exports_and_searches_only_assigned_cases(work):
    access.assign(work, ADMIN, "c1", "rei")
    assert cases.view_case(work, REI, "c1").id == "c1"
    assert export.export_case(work, REI, "c1", None)["case_id"] == "c1"
    assert {hit.face_id for hit in search.search_faces(work, REI, case_id="c1")} >= {11, 12}
    for action, refused_call in [("view_case", lambda: cases.view_case(work, REI, "c2")),
                                 ("export", lambda: export.export_case(work, REI, "c2")),
                                 ("search", lambda: search.search_faces(work, REI, case_id="c2"))]:
        with pytest.raises(Forbidden) as refused:
            refused_call()
        assert refused.value.reason == "not_assigned"
        assert [(r.outcome, r.details["reason"], r.actor) for r in rows(work, action=action, case_id="c2")] == [
            ("rejected", "not_assigned", "rei")]


def test_a_photo_search_shows_a_reviewer_only_their_cases_matches(work):
    photo = ("q.jpg", photo_of(ANN), "image/jpeg")
    wide = search.SearchFilters(top_k=10)
    assert [hit.face_id for hit in search.search_faces(work, ADMIN, photo=photo, filters=wide)] == [11, 12, 31, 21]
    assert search.search_faces(work, REI, photo=photo, filters=wide) == []  # nothing assigned yet
    access.assign(work, ADMIN, "c2", "rei")
    assert [hit.face_id for hit in search.search_faces(work, REI, photo=photo, filters=wide)] == [21]
    access.assign(work, ADMIN, "c1", "rei")
    assert [hit.face_id for hit in search.search_faces(work, REI, photo=photo, filters=wide)] == [11, 12, 21]
    page = search.search_faces(work, REI, photo=photo, filters=search.SearchFilters(top_k=1, offset=1))
    assert [hit.face_id for hit in page] == [12]
    assert search.search_faces(work, AUDITOR, photo=photo, filters=wide) == []
    counts = [(r.actor, r.result_count) for r in rows(work, action="search") if r.outcome != "started"]
    assert counts == [("ada", 4), ("rei", 0), ("rei", 1), ("rei", 3), ("rei", 1), ("aud", 0)]
