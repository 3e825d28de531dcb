"""The pipeline graph hashes every frame and matches by PDQ (issue 20), on a TestPipeline over in-memory stores."""

from __future__ import annotations

import datetime as dt
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
