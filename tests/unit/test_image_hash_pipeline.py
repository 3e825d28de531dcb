"""The pipeline graph hashes every frame and matches by PDQ (issue 20), on a TestPipeline over in-memory stores."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from mimamori.core.config import Settings
from mimamori.media.pdq import DIHEDRAL, pdq_dihedral
from mimamori.services.image_matches import thumbnail_key
from mimamori.stores.cases import Case, Consent, Match, utcnow
from mimamori.stores.image_hashes import ReferenceHash, pdq_key
from tests.integration.samples import Sample, encode
from tests.support import edits
from tests.support.memory import MemoryStores
from tests.support.pipeline import MAX_MEDIA_BYTES, records, run


@pytest.fixture
def stores(offline_settings: Settings) -> Iterator[MemoryStores]:
    offline_settings.pipeline.max_media_bytes = MAX_MEDIA_BYTES
    stores = MemoryStores(offline_settings)
    yield stores
    stores.close()


def test_a_rotated_reupload_of_a_reference_picture_is_matched_by_its_hash(offline_settings, stores, testdata: Path):
    group = edits.resize(Image.open(testdata / "faces" / "multiface.jpg").convert("RGB"), 0.5)
    now = utcnow()
    with stores.sessions.begin() as session:
        session.add(Case(id="c1", display_name="C.", created_by="staff"))
        session.add(Consent(case_id="c1", given_by="client", relationship_to_client="self",
                            given_at=now - dt.timedelta(days=1), scope=["watchlist"], recorded_by="staff"))
    stores.references.add([ReferenceHash("c1", "r" * 64, 0, variant, hashed)
                           for variant, hashed in zip(DIHEDRAL, pdq_dihedral(group), strict=True)])
    rotated = encode(group.transpose(Image.Transpose.ROTATE_270), "JPEG", quality=90)
    run(offline_settings, stores, records(stores, offline_settings, [Sample("rot", rotated, "image/jpeg", "x")], "p"))

    [row] = stores.pdq.rows.values()  # the frame's hash, written with the media
    with stores.sessions() as session:
        [match] = session.scalars(select(Match))
    assert match.face_id == pdq_key(row["media_sha256"], 0) == row["pdq_key"]
    assert match.signals["fired"] == ["pdq"] and match.signals["details"]["pdq"]["variant"] == "rotate270"
    assert match.image_key == thumbnail_key(row["media_sha256"], 0)
    assert match.image_key in stores.objects.keys(offline_settings.minio.buckets.crops.name)
    [event] = stores.producer.documents(offline_settings.kafka.topics.matches.name)
    assert (event["kind"], event["case_id"], event["face_id"]) == ("match", "c1", match.face_id)


def test_a_cropped_reupload_with_its_faces_mosaicked_is_matched_by_its_keypoints(offline_settings, stores,
                                                                                  testdata: Path, monkeypatch):
    """The crop-robust signal in the pipeline: neither PDQ nor a face finds this copy. Its keypoints are
    scored once, ahead of the writer, in ScoreLocalFeatures' read-ahead thread."""
    from mimamori.media.local_features import extract_reference
    from mimamori.models.detector import FaceDetector
    from mimamori.models.devices import pick_device
    from mimamori.services import image_matches
    from mimamori.services.reference_features import store_features
    from mimamori.stores.references import ReferenceMedia

    offline_settings.matching.local_features = True
    portrait = Image.open(testdata / "faces" / "shea_whigham.jpg").convert("RGB")
    portrait.thumbnail((800, 800))
    now = utcnow()
    with stores.sessions.begin() as session:
        session.add(Case(id="c1", display_name="C.", created_by="staff"))
        session.add(Consent(case_id="c1", given_by="client", relationship_to_client="self",
                            given_at=now - dt.timedelta(days=1), scope=["watchlist"], recorded_by="staff"))
        session.add(ReferenceMedia(case_id="c1", sha256="r" * 64, kind="image", added_by="staff"))
    stores.references.add([ReferenceHash("c1", "r" * 64, 0, variant, hashed)
                           for variant, hashed in zip(DIHEDRAL, pdq_dihedral(portrait), strict=True)])
    store_features(stores.objects, offline_settings.minio.buckets.references.name, "c1", "r" * 64,
                   extract_reference(portrait))
    cropped = edits.crop(portrait, 0.3)
    detector = FaceDetector(offline_settings.models.detector, pick_device("cpu"))
    [face] = detector.detect([cropped])[0]
    copy = edits.mosaic_faces(cropped, [face.box], 6)  # the face in 6 x 6 blocks: no face is found in it
    assert detector.detect([copy])[0] == []
    scored_in: list[str] = []

    def picture_scores(*args):
        scored_in.append(threading.current_thread().name)
        return real_picture_scores(*args)

    real_picture_scores = image_matches.picture_scores
    monkeypatch.setattr(image_matches, "picture_scores", picture_scores)
    run(offline_settings, stores, records(stores, offline_settings,
                                          [Sample("crop", encode(copy, "JPEG", quality=85), "image/jpeg", "x")], "p"))
    assert len(scored_in) == 1 and scored_in[0].startswith("read-ahead-local_scores"), scored_in

    with stores.sessions() as session:
        [match] = session.scalars(select(Match))
    assert match.signals["fired"] == ["crop"], match.signals
    assert match.signals["scores"]["crop"] >= offline_settings.matching.local_min_inliers
    assert match.model_version == "pdq" and match.image_key in stores.objects.keys(
        offline_settings.minio.buckets.crops.name)


def test_a_large_scraped_picture_is_hashed_scaled_to_fit_the_configured_side(offline_settings, stores,
                                                                             testdata: Path):
    """Dedupe hashes what it passes on as ``matching.scraped_pdq_max_side`` says (the C++ tool's speed-up)."""
    from mimamori.media.decode import decode_media
    from mimamori.media.pdq import pdq_hash

    side = offline_settings.matching.scraped_pdq_max_side
    data = (testdata / "faces" / "shea_whigham.jpg").read_bytes()  # 2048 x 1991
    picture = decode_media(data, "image/jpeg").frames[0].image
    assert max(picture.size) > side > 0
    run(offline_settings, stores, records(stores, offline_settings, [Sample("big", data, "image/jpeg", "x")], "p"))
    [row] = stores.pdq.rows.values()
    assert bytes(row["pdq"]) == pdq_hash(picture, side).bits != pdq_hash(picture).bits
