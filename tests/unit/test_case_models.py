"""Per-case models (issue 20): the head (training, scoring, calibration, storage format) and the
service around it (versions, audit, retraining on decisions, rescoring, the watchlist, withdrawal)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.core.errors import ConsentMissing, InvalidInput
from mimamori.models.case_head import CaseHead, HeadSettings, train_case_head
from mimamori.services import access, case_models, cases, enrolment, keys, matches
from mimamori.services.audit import Actor
from mimamori.services.consent import ConsentRecord, record_consent
from mimamori.services.watchlist import IndexedFace as StreamFace
from mimamori.services.watchlist import Watchlist
from mimamori.stores.case_models import CaseModel
from mimamori.stores.cases import AuditEvent, Match
from tests.support.memory import MemoryProducer
from tests.support.workspace import IndexedFace, MemoryWorkspace, consent_record, photo_of, unit

ADMIN, REVIEWER = Actor("ada", "admin"), Actor("rei", "reviewer")
CLIENT = (200, 40, 40)
THRESHOLD = 0.94  # dlib-resnet's, the configured model's


def far_faces(first_id: int, count: int) -> list[IndexedFace]:
    """Other people, far from the client (cosine about 0.3 or less): the hard negatives of the index."""
    rng = np.random.default_rng(7)
    faces = []
    for i in range(count):
        vector = np.zeros(8, dtype=np.float32)
        vector[0] = 0.3
        vector[4:] = rng.normal(size=4)
        vector[4:] *= np.sqrt(1 - 0.09) / np.linalg.norm(vector[4:])
        faces.append(IndexedFace(first_id + i, f"{first_id + i:064x}", vector.astype(np.float32)))
    return faces


# Cosines with the enrolled face unit(1, 0): 11 0.999, 12 and 15 0.958 / 0.970 (dimension 1), 13 and 14
# 0.941 / 0.958 (dimension 2), 16 0.932 (under the threshold: no match, so a hard negative).
NEAR = [IndexedFace(11, "a" * 64, unit(1, 0.05)), IndexedFace(12, "b" * 64, unit(1, 0.3)),
        IndexedFace(13, "c" * 64, unit(1, 0, 0.36)), IndexedFace(14, "d" * 64, unit(1, 0, 0.3)),
        IndexedFace(15, "e" * 64, unit(1, 0.25)), IndexedFace(16, "f" * 64, unit(1, 0, 0, 0.39))]


@pytest.fixture
def work(tmp_path):
    return MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {CLIENT: [unit(1, 0)]},
                           NEAR + far_faces(100, 40))


def open_case(work) -> None:
    cases.create_case(work, ADMIN, "c1", "Client C.")
    record_consent(work, ADMIN, "c1", ConsentRecord.model_validate(consent_record()))
    keys.create_key(work, ADMIN, REVIEWER.name, "reviewer")
    access.assign(work, ADMIN, "c1", REVIEWER.name)
    enrolment.enroll(work, ADMIN, "c1", [("p.jpg", photo_of(CLIENT), "image/jpeg")])


def by_face(work) -> dict[int, Match]:
    with work.sessions() as session:
        return {m.face_id: m for m in session.scalars(select(Match).where(Match.case_id == "c1"))}


# -- the head --

def test_the_head_is_deterministic_unit_and_round_trips():
    positives = np.stack([unit(1, 0.1), unit(1, -0.1)])
    negatives = np.stack([f.vector for f in far_faces(0, 20)])
    head, report = train_case_head(positives, negatives, base_threshold=THRESHOLD)
    again, _ = train_case_head(positives, negatives, base_threshold=THRESHOLD)
    assert np.array_equal(head.weights, again.weights)
    assert abs(float(np.linalg.norm(head.weights)) - 1.0) < 1e-6
    assert (report.positives, report.negatives, report.calibration) == (2, 10, 10)
    assert THRESHOLD - 0.02 <= head.threshold <= THRESHOLD and head.floor == pytest.approx(THRESHOLD - 0.02)
    stored = CaseHead.from_bytes(head.to_bytes())
    assert np.array_equal(stored.weights, head.weights) and stored.threshold == head.threshold
    assert len(head.to_bytes()) < 2048  # small: a 8-d head here, 128 floats for dlib's vectors
    with pytest.raises(ValueError, match="dimension"):
        head.score(np.zeros((1, 5), dtype=np.float32))


def test_a_reject_pushes_the_head_away_from_that_face_and_a_confirm_towards_its_own():
    positives = unit(1, 0)[None, :]
    negatives = np.stack([f.vector for f in far_faces(0, 20)])
    plain, _ = train_case_head(positives, negatives, base_threshold=THRESHOLD)
    rejected = unit(1, 0, 0.36)[None, :]
    learned, report = train_case_head(np.vstack([positives, unit(1, 0.3)[None, :]]), negatives, rejected,
                                      base_threshold=THRESHOLD)
    lookalike, sibling = unit(1, 0, 0.3)[None, :], unit(1, 0.25)[None, :]
    assert learned.score(lookalike)[0] < plain.score(lookalike)[0] - 0.005
    assert learned.score(sibling)[0] > plain.score(sibling)[0] + 0.005
    assert report.rejected == 1 and learned.score(rejected)[0] < THRESHOLD


def test_the_threshold_is_lowered_only_as_far_as_held_out_negatives_allow():
    positives = unit(1, 0)[None, :]
    far = np.stack([f.vector for f in far_faces(0, 20)])
    lowered, _ = train_case_head(positives, far, base_threshold=THRESHOLD)
    assert lowered.threshold == pytest.approx(THRESHOLD - 0.02)  # nothing near: down to the floor
    # Two look-alikes at 0.93: one trains, the other calibrates, and holds the threshold at the case's.
    close = np.vstack([far, unit(1, 0, 0, 0, 0, 0, 0.395)[None, :], unit(1, 0, 0, 0, 0, 0.395)[None, :]])
    kept, report = train_case_head(positives, close, base_threshold=THRESHOLD)
    assert kept.threshold == pytest.approx(THRESHOLD) and report.hardest_negative > 0.91
    alone, _ = train_case_head(positives, np.zeros((0, 8)), base_threshold=THRESHOLD)
    assert alone.threshold == THRESHOLD  # nothing to calibrate on: no lowering
    tighter, _ = train_case_head(positives, far, base_threshold=THRESHOLD, settings=HeadSettings(max_lowering=0.0))
    assert tighter.threshold == THRESHOLD


# -- the service --

def test_training_stores_a_version_its_weights_and_an_audit_row(work):
    open_case(work)
    result = case_models.train(work, ADMIN, "c1")
    assert result.version == 1 and result.base_threshold == THRESHOLD
    bucket = work.settings.minio.buckets.references.name
    with work.sessions() as session:
        row = session.scalars(select(CaseModel)).one()
        audit_row = session.scalars(select(AuditEvent).where(AuditEvent.action == "train_case_model")).one()
    data = work.memory_objects._get(bucket, "cases/c1/models/v1.npz")
    assert hashlib.sha256(data).hexdigest() == row.weights_sha256 and row.object_key == "cases/c1/models/v1.npz"
    assert (row.positives, row.rejected, row.decisions, row.reason, row.trained_by) == (1, 0, 0, "manual", "ada")
    # 41 unlabelled faces (the 40 far ones and face 16, under the threshold): every other one trains.
    assert row.negatives == 21
    assert audit_row.target == "case_model:1" and audit_row.details["positives"] == 1
    assert "weights" not in str(audit_row.details)
    found = by_face(work)
    assert sorted(found) == [11, 12, 13, 14, 15] and 16 not in found  # 16: a hard negative, not asked again
    assert result.rescored == 5 and all(m.case_model_version == 1 and m.case_score for m in found.values())
    assert [v.version for v in case_models.versions(work, REVIEWER, "c1")] == [1]


def test_a_confirm_and_a_reject_retrain_the_model_and_change_the_next_scores(work):
    open_case(work)
    case_models.train(work, ADMIN, "c1")
    before = {face: m.case_score for face, m in by_face(work).items()}
    ids = {face: m.id for face, m in by_face(work).items()}
    matches.review(work, REVIEWER, ids[12], "confirmed")  # dimension 1: the client
    matches.review(work, REVIEWER, ids[13], "rejected")  # dimension 2: someone else
    with work.sessions() as session:
        rows = list(session.scalars(select(CaseModel).order_by(CaseModel.version)))
        trained = list(session.scalars(select(AuditEvent).where(AuditEvent.action == "train_case_model")))
    assert [(r.version, r.reason, r.decisions) for r in rows] == [(1, "manual", 0), (2, "decisions", 1),
                                                                  (3, "decisions", 2)]
    assert (rows[2].positives, rows[2].rejected) == (2, 1)
    assert trained[-1].actor == case_models.TRAINER.name and trained[-1].details["triggered_by"] == "rei"
    after = by_face(work)
    assert after[14].case_score < before[14] - 0.005  # like the rejected face: lower
    assert after[15].case_score > before[15] + 0.005  # like the confirmed face: higher
    assert after[14].case_model_version == 3
    assert after[13].case_model_version == 2  # decided (rejected) after v2 scored it: keeps that score
    assert after[13].similarity == pytest.approx(0.9409, abs=1e-3)  # the base similarity stays as evidence


def test_retraining_waits_for_retrain_after_decisions(work):
    work.settings.case_models.retrain_after = 2
    open_case(work)
    ids = {face: m.id for face, m in by_face(work).items()}
    matches.review(work, REVIEWER, ids[12], "confirmed")
    matches.review(work, REVIEWER, ids[11], "unsure")  # not a label: does not count
    with work.sessions() as session:
        assert session.scalars(select(CaseModel)).first() is None
    matches.review(work, REVIEWER, ids[13], "rejected")
    with work.sessions() as session:
        assert [r.decisions for r in session.scalars(select(CaseModel))] == [2]


def test_training_is_refused_without_consent_or_when_turned_off_and_audited(work):
    cases.create_case(work, ADMIN, "c1", "Client C.")
    with pytest.raises(ConsentMissing):
        case_models.train(work, ADMIN, "c1")
    work.settings.case_models.enabled = False
    with pytest.raises(InvalidInput) as refused:
        case_models.train(work, ADMIN, "c1")
    assert refused.value.reason == "case_models_disabled"
    with work.sessions() as session:
        outcomes = [e.outcome for e in session.scalars(select(AuditEvent).where(
            AuditEvent.action == "train_case_model"))]
    assert outcomes == ["rejected", "rejected"]


def test_the_watchlist_scores_with_the_head_and_takes_what_it_vouches_for(work):
    open_case(work)
    case_models.train(work, ADMIN, "c1")
    producer = MemoryProducer()
    watchlist = Watchlist(work.settings, "memory/v1", sessions=work.sessions, enrolled=work.enrolled,
                          producer=producer, objects=work.memory_objects)
    just_under, far_under = unit(1, 0, 0, 0, 0.385), unit(1, 0, 0, 0, 0, 0.6)  # 0.933 and 0.857
    found = watchlist.check([StreamFace(901, "9" * 64, just_under, "m-9", "https://x.example/9", "web", None),
                             StreamFace(902, "8" * 64, far_under, "m-8", "https://x.example/8", "web", None)])
    assert [m.face_id for m in found] == [901]
    match = found[0]
    assert match.similarity < THRESHOLD and match.case_model_version == 1 and match.case_score >= 0.92
    assert match.signals["fired"] == ["case_model"] and "face" in match.signals["scores"]


def test_withdrawal_deletes_every_version_and_its_weights(work):
    open_case(work)
    case_models.train(work, ADMIN, "c1")
    case_models.train(work, ADMIN, "c1")
    cases.withdraw(work, ADMIN, "c1")
    with work.sessions() as session:
        assert session.scalars(select(CaseModel)).first() is None
    assert not [k for k in work.memory_objects.keys(work.settings.minio.buckets.references.name) if "/models/" in k]


def test_the_api_trains_and_lists_versions_for_the_cases_a_reviewer_has(work):
    from fastapi.testclient import TestClient

    from mimamori.api.app import create_app
    from mimamori.services.auth import create_api_key

    open_case(work)  # assigned to the key named "rei"
    headers = {name: {"Authorization": f"Bearer {create_api_key(work.sessions, name, 'reviewer')}"}
               for name in ("rei-api", "other")}
    access.assign(work, ADMIN, "c1", "rei-api")
    with TestClient(create_app(work.settings, work), raise_server_exceptions=False) as client:
        trained = client.post("/cases/c1/models", headers=headers["rei-api"])
        assert trained.status_code == 201, trained.text
        assert trained.json()["version"] == 1 and trained.json()["rescored"] == 5
        listed = client.get("/cases/c1/models", headers=headers["rei-api"]).json()
        assert [(v["version"], v["reason"], v["trained_by"]) for v in listed] == [(1, "manual", "rei-api")]
        refused = client.post("/cases/c1/models", headers=headers["other"])
        assert refused.status_code == 403 and refused.json()["error"] == "not_assigned"
