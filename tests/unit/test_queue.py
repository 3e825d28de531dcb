"""The review queue (mimamori/services/queue.py) on SQLite and the in-memory face index.

Grouping by case and media cluster, the two lanes, only assigned cases, exclusive claims (two
reviewers racing included), decisions with the decision log and their audit rows, the evidence
of one match, the decision log's export, and the pipeline filling the media's pHash.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from mimamori.api.app import create_app
from mimamori.cli.context import operator
from mimamori.cli.main import main
from mimamori.core.config import load_settings
from mimamori.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from mimamori.services import matches, queue
from mimamori.services.audit import Actor
from mimamori.services.auth import create_api_key
from mimamori.stores.cases import AuditEvent, Case, CaseAssignment, EnrolledPhoto, Match, MatchDecision, utcnow
from mimamori.stores.face_search import FaceSearch, Sighting, StoredFace
from mimamori.stores.faces import face_schema
from tests.support.memory import MemoryCollection
from tests.support.workspace import DIMENSION, IndexedFace, MemoryWorkspace, unit

ADMIN, ANNA, BEN, CARL = Actor("ada", "admin"), Actor("anna", "reviewer"), Actor("ben", "reviewer"), \
    Actor("carl", "reviewer")
AUDITOR = Actor("aud", "auditor")
PHASH = "f0e1d2c3b4a59687"
NEAR = f"{int(PHASH, 16) ^ 0b111:016x}"  # 3 bits away: a near-duplicate (the pipeline's distance is 6)
FAR = f"{int(PHASH, 16) ^ 0xFFFF:016x}"  # 16 bits away
T0 = utcnow() - dt.timedelta(hours=1)


@pytest.fixture
def work(tmp_path) -> MemoryWorkspace:
    return MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {})


def open_case(work: MemoryWorkspace, case_id: str, *assignees: str, threshold: float | None = None) -> None:
    with work.sessions.begin() as session:
        session.add(Case(id=case_id, display_name=f"Client {case_id}", created_by="ada", match_threshold=threshold,
                         threshold_model=work.model if threshold is not None else None))
        session.flush()
        session.add_all(CaseAssignment(case_id=case_id, username=name, assigned_by="ada") for name in assignees)


def add_match(work: MemoryWorkspace, case_id: str, face_id: int, sha: str, similarity: float = 0.96,
              phash: str | None = None, minutes: int = 0, status: str = "pending_review") -> int:
    """A match found ``minutes`` after T0, its face in the index with one sighting of its media."""
    if not any(f.face_id == face_id for f in work.index.faces):
        seen = Sighting(f"m-{face_id}", f"https://example.org/{face_id}", f"https://host.example/page/{face_id}",
                        "web", None, None, "original")
        work.index.faces.append(IndexedFace(face_id, sha, unit(1, 0), sightings=[seen]))
    with work.sessions.begin() as session:
        match = Match(case_id=case_id, face_id=face_id, media_sha256=sha, model_version="memory/v1",
                      similarity=similarity, source="stream", status=status, media_phash=phash,
                      created_at=T0 + dt.timedelta(minutes=minutes))
        session.add(match)
        session.flush()
        return match.id


def audit_rows(work, **where) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id)
    for name, value in where.items():
        query = query.where(getattr(AuditEvent, name) == value)
    with work.sessions() as session:
        return list(session.scalars(query))


def decisions(work) -> list[tuple[int, str, str, str | None, bool]]:
    with work.sessions() as session:
        return [(d.match_id, d.decision, d.actor, d.note, d.bulk)
                for d in session.scalars(select(MatchDecision).order_by(MatchDecision.id))]


def shown(page: list[queue.CaseQueue]) -> list[int]:
    return [item.match_id for case in page for cluster in case.clusters for item in cluster.items]


def sha(letter: str) -> str:
    return letter * 64


def test_the_queue_groups_by_case_then_media_cluster_in_order_with_two_batched_face_store_reads(work):
    open_case(work, "c1", "anna")
    open_case(work, "c2", "anna", threshold=0.9)
    a1 = add_match(work, "c1", 1, sha("a"), 0.95, PHASH, minutes=1)
    a2 = add_match(work, "c1", 2, sha("a"), 0.97, None, minutes=2)  # the same media, no hash: by sha256
    b = add_match(work, "c1", 3, sha("b"), 0.99, NEAR, minutes=3)  # a near-duplicate of a1's media
    c = add_match(work, "c1", 4, sha("c"), 0.96, FAR, minutes=4)  # another picture
    d = add_match(work, "c2", 5, sha("d"), 0.93, None, minutes=0)
    work.index.calls.clear()

    page = queue.review_queue(work, ANNA)
    assert [(q.case_id, q.pending_total, q.threshold) for q in page] == [("c1", 4, 0.94), ("c2", 1, 0.9)]
    assert [[item.match_id for item in cluster.items] for cluster in page[0].clusters] == [[c], [b, a2, a1]]
    assert page[0].clusters[1].key == sha("b") and page[0].clusters[1].media_sha256s == [sha("b"), sha("a")]
    item = page[0].clusters[0].items[0]
    assert (item.face.crop_key, item.face.platform, item.page_url, len(item.sightings)) == \
        ("crops/4.jpg", "web", "https://host.example/page/4", 1)
    assert sorted(name for name, _ in work.index.calls) == ["faces_by_id", "sightings_of"]

    strongest = queue.review_queue(work, ANNA, order="strongest")
    # c2's best is 0.03 over its threshold, c1's 0.05 over the default 0.94.
    assert [q.case_id for q in strongest] == ["c1", "c2"]
    assert shown(strongest) == [b, a2, a1, c, d]
    limited = queue.review_queue(work, ANNA, limit=2)
    assert shown(limited) == [c, b] and [(q.case_id, q.pending_total, q.clusters) for q in limited][1] == \
        ("c2", 1, [])
    assert shown(queue.review_queue(work, ANNA, case_id="c2")) == [d]
    assert [r.result_count for r in audit_rows(work, action="view_queue")] == [5, 5, 2, 1]


def test_a_reviewer_sees_only_assigned_cases_and_admins_see_all(work):
    open_case(work, "c1", "anna")
    open_case(work, "c2", "ben")
    mine, theirs = add_match(work, "c1", 1, sha("a")), add_match(work, "c2", 2, sha("b"))
    assert shown(queue.review_queue(work, ANNA)) == [mine]
    assert shown(queue.review_queue(work, ADMIN)) == [theirs, mine]
    assert queue.review_queue(work, AUDITOR) == []
    with pytest.raises(Forbidden) as refused:
        queue.review_queue(work, ANNA, case_id="c2")
    assert refused.value.reason == "not_assigned" and refused.value.audited
    assert [m.id for m in matches.list_matches(work, ANNA)] == [mine]
    with pytest.raises(Forbidden):
        matches.list_matches(work, ANNA, case_id="c2")
    with pytest.raises(InvalidInput):
        queue.review_queue(work, ANNA, lane="later")
    with pytest.raises(NotFound) as unknown:
        queue.review_queue(work, ADMIN, case_id="nobody")
    assert unknown.value.reason == "unknown_case"


def test_claims_are_exclusive_until_they_expire_or_are_released(work):
    open_case(work, "c1", "anna", "ben")
    open_case(work, "c2", "carl")
    first, second, elsewhere = add_match(work, "c1", 1, sha("a")), add_match(work, "c1", 2, sha("b")), \
        add_match(work, "c2", 3, sha("c"))
    assert queue.claim(work, ANNA, [first, elsewhere]) == [first]  # c2 is not hers
    assert shown(queue.review_queue(work, BEN)) == [second]
    assert queue.claim(work, BEN, [first, second]) == [second]
    assert shown(queue.review_queue(work, ANNA)) == [first]
    assert [(q.case_id, q.pending_total) for q in queue.review_queue(work, ADMIN)] == [("c2", 1)]
    with work.sessions() as session:
        held = session.get(Match, first)
        minutes = (held.claimed_until - utcnow()).total_seconds() / 60
    assert held.claimed_by == "anna" and 14 < minutes <= 15  # the organisation's claim_minutes
    assert queue.release(work, BEN, [first, second]) == 1  # only his own
    assert shown(queue.review_queue(work, ANNA)) == [second, first]
    with work.sessions.begin() as session:  # anna's claim runs out
        session.execute(update(Match).where(Match.id == first).values(claimed_until=utcnow() - dt.timedelta(1)))
    assert queue.claim(work, BEN, [first]) == [first]
    with pytest.raises(Forbidden):
        queue.claim(work, AUDITOR, [first])
    assert [(r.actor, r.result_count) for r in audit_rows(work, action="claim")] == \
        [("anna", 1), ("ben", 1), ("ben", 1), ("aud", None)]


def test_two_reviewers_claiming_at_once_never_hold_the_same_item(work):
    open_case(work, "c1", "anna", "ben")
    ids = [add_match(work, "c1", face, sha(f"{face:x}")) for face in range(1, 13)]
    held: dict[str, list[int]] = {}
    start = threading.Barrier(2)

    def take(actor: Actor, order: list[int]) -> None:
        start.wait()
        got = []
        for i in range(0, len(order), 3):  # in batches, as a reviewer opens clusters
            got += queue.claim(work, actor, order[i:i + 3])
        held[actor.name] = got

    threads = [threading.Thread(target=take, args=(ANNA, ids)), threading.Thread(target=take, args=(BEN, ids[::-1]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(held["anna"]) & set(held["ben"])
    assert sorted(held["anna"] + held["ben"]) == ids
    with work.sessions() as session:
        owners = {m.id: m.claimed_by for m in session.scalars(select(Match))}
    assert all(owners[i] == "anna" for i in held["anna"]) and all(owners[i] == "ben" for i in held["ben"])


def test_a_decision_is_logged_sets_the_match_releases_the_claim_and_is_audited(work):
    open_case(work, "c1", "anna", "ben")
    open_case(work, "c2", "carl")
    match_id = add_match(work, "c1", 1, sha("a"))
    other = add_match(work, "c2", 2, sha("b"))
    queue.claim(work, ANNA, [match_id])
    with pytest.raises(Conflict) as taken:
        queue.decide(work, BEN, match_id, "rejected")
    assert taken.value.reason == "claimed_by_other"
    with pytest.raises(Forbidden) as unassigned:
        queue.decide(work, ANNA, other, "confirmed")
    assert unassigned.value.reason == "not_assigned"
    with pytest.raises(Forbidden):
        queue.decide(work, AUDITOR, match_id, "confirmed")
    with pytest.raises(InvalidInput):
        queue.decide(work, ANNA, match_id, "pending_review")  # reopening is the CLI's review
    with pytest.raises(NotFound):
        queue.decide(work, ANNA, 999, "confirmed")

    decided = queue.decide(work, ANNA, match_id, "confirmed", note="  her tattoo  ")
    assert (decided.status, decided.note, decided.reviewed_by) == ("confirmed", "her tattoo", "anna")
    with work.sessions() as session:
        assert session.get(Match, match_id).claimed_by is None
    assert decisions(work) == [(match_id, "confirmed", "anna", "her tattoo", False)]
    [row] = audit_rows(work, action="review", outcome="ok")
    assert (row.actor, row.case_id, row.target, row.details["decision"]) == ("anna", "c1", f"match:{match_id}",
                                                                             "confirmed")
    assert [r.details["reason"] for r in audit_rows(work, action="review", outcome="rejected")] == \
        ["claimed_by_other", "not_assigned", "role_cannot_review", "unknown_status", "unknown_match"]

    # Idempotent: the same decision again (a double click) writes no second decision row.
    again = queue.decide(work, ANNA, match_id, "confirmed", note="her tattoo")
    assert again == decided and len(decisions(work)) == 1
    assert audit_rows(work, action="review", outcome="ok")[-1].details["repeat"] is True
    # In the queue, a match another reviewer decided meanwhile is theirs (a stale page); its
    # reviewer may change it, and so may an explicit review (the CLI, the API): new rows.
    with pytest.raises(Conflict) as stale:
        queue.decide(work, BEN, match_id, "rejected")
    assert stale.value.reason == "already_decided"
    queue.decide(work, ANNA, match_id, "confirmed", note="her tattoo, left arm")
    matches.review(work, BEN, match_id, "confirmed", note="her tattoo, left arm")
    matches.review(work, BEN, match_id, "rejected", note="not her: the scar is missing")
    assert [d[1:3] for d in decisions(work)] == [("confirmed", "anna"), ("confirmed", "anna"), ("confirmed", "ben"),
                                                 ("rejected", "ben")]
    with pytest.raises(InvalidInput) as long:
        queue.decide(work, BEN, match_id, "rejected", note="x" * 2001)
    assert long.value.reason == "note_too_long"


def test_unsure_items_go_to_a_second_opinion_lane_that_skips_who_marked_them(work):
    open_case(work, "c1", "anna", "ben")
    match_id = add_match(work, "c1", 1, sha("a"))
    queue.decide(work, ANNA, match_id, "unsure", note="the face is half hidden")
    assert shown(queue.review_queue(work, ANNA)) == []
    assert shown(queue.review_queue(work, ANNA, lane="unsure")) == []
    assert queue.claim(work, ANNA, [match_id]) == []
    [case] = queue.review_queue(work, BEN, lane="unsure")
    assert shown([case]) == [match_id] and case.clusters[0].items[0].note == "the face is half hidden"
    queue.decide(work, ADMIN, match_id, "unsure")
    assert shown(queue.review_queue(work, ADMIN, lane="unsure")) == [match_id]  # admins see all of them
    assert shown(queue.review_queue(work, ANNA, lane="unsure")) == []  # she marked it once
    assert queue.claim(work, BEN, [match_id]) == [match_id]
    assert queue.decide(work, BEN, match_id, "confirmed").status == "confirmed"
    assert shown(queue.review_queue(work, BEN, lane="unsure")) == []


def test_a_cluster_is_decided_at_once_or_not_at_all(work):
    open_case(work, "c1", "anna", "ben")
    ids = [add_match(work, "c1", face, sha("a"), minutes=face) for face in (1, 2, 3)]
    queue.claim(work, BEN, [ids[2]])
    with pytest.raises(Conflict):
        queue.decide_cluster(work, ANNA, ids, "rejected", note="a stranger")
    with work.sessions() as session:
        assert {m.status for m in session.scalars(select(Match))} == {"pending_review"}
    queue.release(work, BEN, [ids[2]])
    queue.claim(work, ANNA, ids[:2])
    views = queue.decide_cluster(work, ANNA, ids, "rejected", note="a stranger")
    assert [(v.id, v.status) for v in views] == [(i, "rejected") for i in ids]
    assert decisions(work) == [(i, "rejected", "anna", "a stranger", True) for i in ids]
    bulk = audit_rows(work, action="review", outcome="ok")
    assert [(r.target, r.details["bulk"]) for r in bulk] == [(f"match:{i}", 3) for i in ids]
    with work.sessions() as session:
        assert {m.claimed_by for m in session.scalars(select(Match))} == {None}


def test_the_evidence_of_a_match_is_on_one_screen_and_audited(work):
    open_case(work, "c1", "anna")
    open_case(work, "c2")
    match_id = add_match(work, "c1", 7, sha("a"), 0.97)
    hidden = add_match(work, "c2", 8, sha("b"))
    with work.sessions.begin() as session:
        session.add(EnrolledPhoto(case_id="c1", sha256=sha("e"), object_key="cases/c1/p.jpg",
                                  crop_key="cases/c1/p-crop.jpg", face_id=99, model_version="memory/v1",
                                  enrolled_by="ada"))
    queue.decide(work, ANNA, match_id, "unsure", note="maybe")
    found = queue.evidence(work, ANNA, match_id)
    assert (found.match.id, found.match.status, found.threshold, found.display_name) == \
        (match_id, "unsure", 0.94, "Client c1")
    assert (found.face.crop_key, found.face.source_url, found.page_url) == \
        ("crops/7.jpg", "https://example.org/7", "https://host.example/page/7")
    assert len(found.enrolled_photo_ids) == 1 and [s.media_id for s in found.sightings] == ["m-7"]
    assert [(d.decision, d.note) for d in found.decisions] == [("unsure", "maybe")]
    with pytest.raises(Forbidden):
        queue.evidence(work, ANNA, hidden)
    with pytest.raises(NotFound):
        queue.evidence(work, ANNA, 12345)
    assert [(r.case_id, r.target, r.outcome) for r in audit_rows(work, action="view_match")] == \
        [("c1", f"match:{match_id}", "ok"), (None, f"match:{hidden}", "rejected"), (None, "match:12345", "rejected")]


def test_the_decision_log_for_auditors_admins_and_a_reviewers_own_cases_as_csv(work):
    open_case(work, "c1", "anna")
    open_case(work, "c2", "ben")
    first, second = add_match(work, "c1", 1, sha("a"), 0.951), add_match(work, "c2", 2, sha("b"))
    queue.decide(work, ANNA, first, "confirmed", note="=HYPERLINK(\"http://evil.example\")")
    queue.decide(work, BEN, second, "rejected")
    assert [r.match_id for r in queue.decision_log(work, AUDITOR)] == [first, second]
    assert [r.match_id for r in queue.decision_log(work, ADMIN, case_id="c2")] == [second]
    assert [r.match_id for r in queue.decision_log(work, ANNA)] == [first]
    with pytest.raises(Forbidden):
        queue.decision_log(work, ANNA, case_id="c2")
    assert queue.decision_log(work, AUDITOR, since=utcnow() + dt.timedelta(minutes=1)) == []
    with pytest.raises(InvalidInput):
        queue.decision_log(work, AUDITOR, since=dt.datetime(2026, 1, 1))
    text = queue.decision_log_csv(queue.decision_log(work, AUDITOR, case_id="c1"))
    header, line = text.splitlines()
    assert header == "id,at,case_id,match_id,decision,note,actor,role,bulk,similarity,media_sha256"
    assert ',"\'=HYPERLINK(""http://evil.example"")",anna,reviewer,False,0.951,' in line
    assert [(r.actor, r.result_count, r.outcome) for r in audit_rows(work, action="export_decisions")] == \
        [("aud", 2, "ok"), ("ada", 1, "ok"), ("anna", 1, "ok"), ("anna", None, "rejected"), ("aud", 0, "ok"),
         ("aud", None, "rejected"), ("aud", 1, "ok")]


def test_review_through_the_cli_and_api_path_writes_the_decision_log(work):
    open_case(work, "c1", "anna", "ben")
    match_id = add_match(work, "c1", 1, sha("a"))
    queue.claim(work, BEN, [match_id])
    with pytest.raises(Conflict):
        matches.review(work, ANNA, match_id, "confirmed")
    operator = Actor("operator", "operator")
    queue.release(work, BEN, [match_id])
    assert matches.review(work, ANNA, match_id, "unsure").status == "unsure"
    assert matches.review(work, operator, match_id, "pending_review").status == "pending_review"  # reopened
    assert [d[:3] for d in decisions(work)] == [(match_id, "unsure", "anna"), (match_id, "pending_review",
                                                                                "operator")]
    assert shown(queue.review_queue(work, BEN)) == [match_id]



def test_the_face_store_reads_faces_by_id_in_one_query(offline_settings):
    collection = MemoryCollection("faces_test", face_schema(DIMENSION, "dlib-resnet"))
    row = {"face_id": 7, "embedding": [0.0] * DIMENSION, "media_sha256": sha("a"), "frame_ms": 0, "face_index": 0,
           "source_url": "https://host.example/a.jpg", "platform": "web", "posted_at": 1_764_547_200,
           "indexed_at": 1_764_550_800, "box": {"x1": 1.0, "y1": 2.0, "x2": 30.0, "y2": 40.0}, "det_score": 0.99,
           "quality": 0.8, "model_version": "dlib-resnet/v1@test", "crop_key": "dlib-resnet/aa/a/0-0.jpg"}
    collection.upsert([row, {**row, "face_id": 8, "crop_key": "other.jpg"}])
    searcher = FaceSearch.__new__(FaceSearch)  # FaceSearch() connects to Milvus; its reads only need a collection
    searcher._target = (collection, "dlib-resnet")
    found = searcher.faces_by_id({7, 9})
    assert list(found) == [7]
    assert found[7] == StoredFace(7, sha("a"), "https://host.example/a.jpg", "web", "2025-12-01T00:00:00Z",
                                  "2025-12-01T01:00:00Z", {"x1": 1.0, "y1": 2.0, "x2": 30.0, "y2": 40.0}, 0.8,
                                  "dlib-resnet/v1@test", 0, "dlib-resnet/aa/a/0-0.jpg")
    assert searcher.faces_by_id(set()) == {}



def test_the_cli_and_the_api_take_unsure_and_a_note(work, tmp_path, capsys):
    open_case(work, "c1", "k-rev")
    first, second = add_match(work, "c1", 1, sha("a")), add_match(work, "c1", 2, sha("b"))
    key = create_api_key(work.sessions, "k-rev", "reviewer")
    with TestClient(create_app(work.settings, work), raise_server_exceptions=False) as client:
        answer = client.post(f"/matches/{first}/review", json={"status": "unsure", "note": "the light"},
                             headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200 and (answer.json()["status"], answer.json()["note"]) == ("unsure", "the light")
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"database": {"url": str(work.sessions.kw["bind"].url)},
                                    "stack": {"home": str(tmp_path / "stack")}}))
    assert main(["--config", str(site), "review", str(second), "rejected", "--note", "not her"]) == 0
    assert capsys.readouterr().out.strip() == f"match {second} (case c1): rejected"
    assert decisions(work) == [(first, "unsure", "k-rev", "the light", False),
                               (second, "rejected", operator().name, "not her", False)]
