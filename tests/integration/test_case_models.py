"""The per-case model on the real stack (issue 20): a confirm and a reject change the next scores.

Real LFW photos through the real encoder; the face collection in Milvus holds five other photos of
the client and photos of other people (three of them look-alikes over the case's threshold), written
directly (the pipeline's indexing is tested elsewhere). The case is enrolled (its retro search finds
the matches), a model is trained, then a reviewer confirms one of the client's photos and rejects a
look-alike: each decision trains a new version by itself, whose scores of the case's other open
matches differ from the first version's, and the watchlist scores a new upload with the newest one.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from mimamori.services import case_models, cases, enrolment, matches
from mimamori.services.audit import Actor
from mimamori.services.consent import ConsentRecord
from mimamori.services.watchlist import IndexedFace, Watchlist
from mimamori.services.workspace import Workspace
from mimamori.stores.case_models import CaseModel
from mimamori.stores.cases import AuditEvent, Match
from mimamori.stores.faces import ensure_face_collection
from mimamori.stores.objects import object_client
from tests.integration.helpers import isolated_settings
from tests.support.memory import MemoryProducer

pytestmark = pytest.mark.integration
ADMIN = Actor("ada", "admin")  # admins decide any case's matches
CLIENT = "Amelie_Mauresmo"
LOOKALIKES = ["Jennifer_Capriati", "David_Nalbandian", "Kim_Clijsters"]  # 0.917-0.938 to the enrolled photos
OTHERS = ["Abdullah_Gul", "Adrien_Brody", "Alejandro_Toledo", "Andre_Agassi", "Angelina_Jolie", "Ann_Veneman",
          "Ariel_Sharon", "Arnold_Schwarzenegger", "Bill_Clinton", "Colin_Powell", "Gloria_Macapagal_Arroyo",
          "Hans_Blix", "Jacques_Chirac", "John_Ashcroft", "Laura_Bush", "Serena_Williams"]


def photo(testdata, name: str, number: int) -> tuple[str, bytes]:
    path = testdata / "lfw" / name / f"{name}_{number:04d}.jpg"
    return path.name, path.read_bytes()


def index_faces(work: Workspace, faces: dict[str, tuple[bytes, np.ndarray]]) -> dict[str, int]:
    """Write one face per photo into the model's face collection; photo name -> face id."""
    collection = ensure_face_collection(work.settings, work.model)
    version = work.encoder_for().version
    now = int(dt.datetime.now(dt.UTC).timestamp())
    rows, ids = [], {}
    for number, (name, (data, vector)) in enumerate(sorted(faces.items()), 1):
        ids[name] = 10_000 + number
        rows.append({"face_id": ids[name], "embedding": vector.tolist(),
                     "media_sha256": hashlib.sha256(data).hexdigest(), "frame_ms": 0, "face_index": 0,
                     "source_url": f"https://example.org/{name}", "platform": "web", "posted_at": now,
                     "indexed_at": now, "box": {"x1": 0, "y1": 0, "x2": 1, "y2": 1}, "det_score": 0.99,
                     "quality": 1.0, "model_version": version, "crop_key": f"crops/{name}"})
    collection.upsert(rows)  # searched with strong consistency: no flush needed
    return ids


@pytest.fixture(scope="module")
def work(stack, settings, testdata):
    with isolated_settings(settings) as s:
        yield Workspace(s)


def indexed_people(work, testdata, encoder) -> dict[str, int]:
    """The client's photos 4-8 and one photo of each look-alike and other person, in the face index."""
    wanted = [(CLIENT, n) for n in range(4, 9)] + [(p, 1) for p in LOOKALIKES + OTHERS]
    faces = {}
    for person, number in wanted:
        name, data = photo(testdata, person, number)
        face = min(encoder.encode(Image.open(testdata / "lfw" / person / name).convert("RGB")),
                   key=lambda f: abs((f.detection.box[0] + f.detection.box[2]) / 2 - 125))  # LFW's centred face
        faces[name] = (data, face.vector)
    return index_faces(work, faces)


def test_a_confirm_and_a_reject_change_the_next_scores_of_the_case(work, testdata):
    encoder = work.encoder_for()
    ids = indexed_people(work, testdata, encoder)

    cases.create_case(work, ADMIN, "cm-1", "Client M.", match_threshold=0.91)
    consent = ConsentRecord(given_by="the client", given_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
                            scope=["search", "watchlist"], recorded_by="staff")
    enrolled = enrolment.enroll(work, ADMIN, "cm-1", [(n, d, "image/jpeg") for n, d in
                                                      (photo(testdata, CLIENT, k) for k in (1, 2, 3))], consent)
    assert enrolled.retro_matches >= 7  # the client's five photos and the look-alikes over 0.91

    first = case_models.train(work, ADMIN, "cm-1")
    assert first.version == 1 and first.rescored == enrolled.retro_matches
    with work.sessions() as session:
        found = {m.face_id: m for m in session.scalars(select(Match).where(Match.case_id == "cm-1"))}
    by_name = {name: found[face_id] for name, face_id in ids.items() if face_id in found}
    confirm, reject = by_name[f"{CLIENT}_0004.jpg"], by_name[f"{LOOKALIKES[0]}_0001.jpg"]
    before = {m.face_id: m.case_score for m in found.values()}
    assert all(score is not None for score in before.values())

    matches.review(work, ADMIN, confirm.id, "confirmed")
    matches.review(work, ADMIN, reject.id, "rejected")

    with work.sessions() as session:
        versions = list(session.scalars(select(CaseModel).where(CaseModel.case_id == "cm-1")
                                        .order_by(CaseModel.version)))
        after = {m.face_id: m for m in session.scalars(select(Match).where(Match.case_id == "cm-1"))}
        trainings = list(session.scalars(select(AuditEvent).where(AuditEvent.action == "train_case_model",
                                                                  AuditEvent.case_id == "cm-1")))
    assert [(v.version, v.reason, v.positives, v.rejected) for v in versions] == [
        (1, "manual", 3, 0), (2, "decisions", 4, 0), (3, "decisions", 4, 1)]
    assert [t.target for t in trainings] == ["case_model:1", "case_model:2", "case_model:3"]
    still_open = [f for f, m in after.items() if m.status == "pending_review"]
    assert len(still_open) == len(found) - 2
    for face_id in still_open:
        assert after[face_id].case_model_version == 3
        assert abs(after[face_id].case_score - before[face_id]) > 1e-4, face_id  # the decisions moved its score
        assert after[face_id].similarity == found[face_id].similarity  # the base score stays as it was
    weights = object_client(work.settings).get_object(work.settings.minio.buckets.references.name,
                                                      versions[-1].object_key).read()
    assert hashlib.sha256(weights).hexdigest() == versions[-1].weights_sha256

    # The next upload of the client is scored by the newest version in the stream.
    name, data = photo(testdata, CLIENT, 9)
    face = encoder.encode(Image.open(testdata / "lfw" / CLIENT / name).convert("RGB"))[0]
    watchlist = Watchlist(work.settings, encoder.version, sessions=work.sessions, producer=MemoryProducer())
    new = watchlist.check([IndexedFace(99_999, hashlib.sha256(data).hexdigest(), face.vector, "m-9",
                                       "https://example.org/new", "web", None)])
    assert [m.case_model_version for m in new] == [3] and new[0].case_score is not None

    report = cases.withdraw(work, ADMIN, "cm-1")
    assert report.objects >= 3 + 3  # photos, crops and the three model versions' weights
    with work.sessions() as session:
        assert session.scalars(select(CaseModel).where(CaseModel.case_id == "cm-1")).first() is None
