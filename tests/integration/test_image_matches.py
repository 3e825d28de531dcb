"""A re-upload the face path cannot find is matched by its PDQ hash, on the real stack (issue 20).

A case enrols a known picture (the group photo) as reference media through the API. The
re-upload has every face mosaicked and is rotated by 90°: MTCNN finds no face in it, so the face
watchlist has nothing to compare; the picture's hash is a couple of bits from the reference's
rotate90 variant. Through Kafka and the pipeline it must become a match with PDQ evidence, a
thumbnail in the crops bucket and an event on the matches topic; withdrawal then deletes the
reference hashes from Milvus, the thumbnail from MinIO and the rows.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from mimamori.api.app import create_app
from mimamori.services.auth import create_api_key
from mimamori.services.matches import MatchView
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import Match
from mimamori.stores.image_hashes import MediaHashes, ReferenceHashes
from mimamori.stores.objects import object_client
from mimamori.stores.references import ReferenceMedia
from tests.integration import samples as sample_sets
from tests.integration.helpers import isolated_settings, publish, read_topic, run_pipeline
from tests.support import edits

pytestmark = pytest.mark.integration
CASE = "case-pdq"


def jpeg(image: Image.Image, quality: int = 88) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_a_face_mosaicked_rotated_reupload_is_matched_by_pdq_and_withdrawal_deletes_the_hashes(stack, settings,
                                                                                              testdata):
    with isolated_settings(settings) as s:
        work = Workspace(s)
        admin = {"Authorization": f"Bearer {create_api_key(work.sessions, 'test-admin', 'admin')}"}
        original = (testdata / "faces" / "multiface.jpg").read_bytes()
        picture = Image.open(io.BytesIO(original)).convert("RGB")
        boxes = [face.detection.box for face in work.encoder_for().encode(picture)]
        assert len(boxes) == 6
        reupload = edits.mosaic_faces(picture, boxes, 8).transpose(Image.Transpose.ROTATE_90)
        assert work.encoder_for().encode(reupload) == []  # the face path has nothing to go on
        with TestClient(create_app(s, work), raise_server_exceptions=False) as client:
            assert client.post("/cases", json={"id": CASE, "display_name": "Client Q."}, headers=admin).status_code \
                == 201
            now = dt.datetime.now(dt.UTC)
            consent = {"given_by": "the client", "given_at": (now - dt.timedelta(days=1)).isoformat(),
                       "scope": ["search", "watchlist", "takedown"], "recorded_by": "staff-7"}
            assert client.post(f"/cases/{CASE}/consent", json=consent, headers=admin).status_code == 201
            added = client.post(f"/cases/{CASE}/references", headers=admin,
                                files={"media": ("leaked.jpg", original, "image/jpeg")})
            assert added.status_code == 201, added.text
            assert added.json()["references"][0]["hashes"] == 8 and added.json()["retro_matches"] == 0

            publish(s, [sample_sets.Sample("mosaic_rot90", jpeg(reupload), "image/jpeg", "faces:0")], "live")
            run_pipeline(s, s.kafka.consumer_group)

            with work.sessions() as session:
                [match] = session.scalars(select(Match).where(Match.case_id == CASE))
            assert match.signals["fired"] == ["pdq"] and match.signals["scores"]["pdq"] <= 8
            assert match.signals["details"]["pdq"]["variant"] == "rotate90"
            assert match.status == "pending_review" and match.source == "stream" and match.image_key
            crops = object_client(s)
            assert crops.stat_object(s.minio.buckets.crops.name, match.image_key).size > 0
            [event] = [e for e in read_topic(s, s.kafka.topics.matches.name) if e["match_id"] == match.id]
            assert event["kind"] == "match" and event["case_id"] == CASE
            assert len(MediaHashes(s).within([ReferenceHashes(s).of_case(CASE)[0].hash.bits], 256)[0]) >= 1

            assert MatchView.of(match).matched_by.startswith("PDQ distance ")  # the reviewer's line

            assert client.delete(f"/cases/{CASE}", headers=admin).status_code == 200
        assert ReferenceHashes(s).count(CASE) == 0
        prefix = f"cases/{CASE}/"
        assert not list(crops.list_objects(s.minio.buckets.references.name, prefix=prefix, recursive=True))
        with work.sessions() as session:
            assert session.scalars(select(ReferenceMedia)).first() is None
            assert session.scalars(select(Match)).first() is None


def test_a_reference_hash_is_found_by_a_search_made_right_after_its_write_was_noted(stack, settings):
    """``ReferenceHashes.nearest`` with the moment the write was noted (a guarantee timestamp, not
    Strong consistency) sees the hash at once, as the pipeline's writer must right after an enrolment."""
    from mimamori.media.pdq import PdqHash
    from mimamori.stores.image_hashes import ReferenceHash

    with isolated_settings(settings) as s:
        hashes = ReferenceHashes(s)
        for i in range(3):  # each time a new hash, searched for at once
            bits = bytes((i * 37 + j * 11) % 256 for j in range(32))
            hashes.add([ReferenceHash(CASE, f"{i:064x}", 0, "original", PdqHash(bits, 100))])
            noted = dt.datetime.now(dt.UTC)
            [hits] = hashes.nearest([bits], [CASE], 0, 5, noted)
            assert [(h.reference.reference_sha256, h.distance) for h in hits] == [(f"{i:064x}", 0)]
