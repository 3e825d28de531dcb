"""Reviewer-safe images (mimamori/services/review_images.py): blurred and greyscale on the server,
no metadata, the original only on a reveal, which is audited; access by case."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.core.errors import Forbidden, InvalidInput, NotFound
from mimamori.services.audit import Actor
from mimamori.services.review_images import enrolled_face_image, found_face_image, safe_image
from mimamori.services.users import ViewSettings
from mimamori.stores.cases import AuditEvent, Case, CaseAssignment, EnrolledPhoto, Match
from tests.support.workspace import IndexedFace, MemoryWorkspace, unit

ANNA, BEN = Actor("anna", "reviewer"), Actor("ben", "reviewer")
VIEW = ViewSettings(blur_radius=24, greyscale=True, language="en")


def face_crop(side: int = 160, seed: int = 1) -> bytes:
    """A detailed picture (random blocks, sharp edges) as a crop JPEG with EXIF, as a camera writes it."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
    image = Image.fromarray(blocks, "RGB").resize((side, side), Image.Resampling.NEAREST)
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    exif[0x8825] = {2: (35.0, 41.0, 0.0)}  # GPS
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def detail(image: Image.Image) -> float:
    """How much fine detail an image has: the mean absolute response of an edge filter."""
    return float(np.abs(np.asarray(image.convert("L").filter(ImageFilter.FIND_EDGES), dtype=np.float64)[2:-2, 2:-2])
                 .mean())


def test_a_safe_image_is_strongly_blurred_greyscale_small_and_without_metadata():
    original = face_crop(160)
    sharp = Image.open(io.BytesIO(original))
    assert sharp.getexif()  # the source carries EXIF
    safe = Image.open(io.BytesIO(safe_image(original, 24, True)))
    assert (safe.format, safe.mode, safe.size) == ("JPEG", "L", (256, 256))
    assert not safe.getexif() and "exif" not in safe.info and "icc_profile" not in safe.info
    # 24 is strong on a 160 px crop: almost no detail is left, and neighbouring blocks melt together.
    sharp_detail = detail(sharp.resize((256, 256)))
    assert detail(safe) < sharp_detail / 10
    grey = np.asarray(safe, dtype=np.float64)
    assert grey.std() < np.asarray(sharp.convert("L").resize((256, 256)), dtype=np.float64).std() / 3
    # A weaker setting keeps more; greyscale off keeps colour; large images come down to max_side.
    assert detail(Image.open(io.BytesIO(safe_image(original, 4, True)))) > detail(safe)
    assert Image.open(io.BytesIO(safe_image(original, 24, False))).mode == "RGB"
    big = Image.open(io.BytesIO(safe_image(face_crop(800), 24, True, max_side=128)))
    assert big.size == (128, 128)


def test_a_safe_image_of_bytes_that_are_no_image_is_refused():
    with pytest.raises(InvalidInput) as refused:
        safe_image(b"not an image", 24, True)
    assert refused.value.reason == "unsupported_format"


@pytest.fixture
def work(tmp_path) -> MemoryWorkspace:
    work = MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {},
                           [IndexedFace(7, "a" * 64, unit(1, 0))])
    with work.sessions.begin() as session:
        session.add_all([Case(id="c1", display_name="C.", created_by="ada"),
                         Case(id="c2", display_name="D.", created_by="ada")])
        session.flush()
        session.add(CaseAssignment(case_id="c1", username="anna", assigned_by="ada"))
        session.add(Match(case_id="c1", face_id=7, media_sha256="a" * 64, model_version="memory/v1",
                          similarity=0.97, source="stream"))
        session.add(Match(case_id="c2", face_id=8, media_sha256="b" * 64, model_version="memory/v1",
                          similarity=0.97, source="stream"))
        session.add(EnrolledPhoto(case_id="c1", sha256="e" * 64, object_key="cases/c1/p.jpg",
                                  crop_key="cases/c1/p-crop.jpg", face_id=99, model_version="memory/v1",
                                  enrolled_by="ada"))
    work.objects.put(work.settings.minio.buckets.crops.name, "crops/7.jpg", face_crop(160, seed=7))
    work.objects.put(work.settings.minio.buckets.references.name, "cases/c1/p-crop.jpg", face_crop(160, seed=9))
    return work


def audit_rows(work) -> list[tuple[str, str, str | None, str | None]]:
    with work.sessions() as session:
        return [(r.action, r.outcome, r.case_id, r.target)
                for r in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def match_ids(work) -> tuple[int, int]:
    with work.sessions() as session:
        return tuple(session.scalars(select(Match.id).order_by(Match.id)))


def test_the_found_face_is_blurred_until_revealed_and_each_reveal_is_audited(work):
    mine, theirs = match_ids(work)
    stored = work.objects.get_object(work.settings.minio.buckets.crops.name, "crops/7.jpg").read()
    blurred = found_face_image(work, ANNA, mine, VIEW)
    assert blurred != stored and Image.open(io.BytesIO(blurred)).mode == "L"
    assert audit_rows(work) == []  # a blurred view is not a reveal
    assert found_face_image(work, ANNA, mine, VIEW, reveal=True) == stored
    with pytest.raises(Forbidden):
        found_face_image(work, ANNA, theirs, VIEW, reveal=True)
    with pytest.raises(NotFound):
        found_face_image(work, ANNA, 999, VIEW)
    assert audit_rows(work) == [("reveal", "ok", "c1", f"match:{mine}"),
                                ("reveal", "rejected", None, f"match:{theirs}"),
                                ("view_image", "rejected", None, "match:999")]


def test_a_found_face_no_longer_indexed_or_stored_is_not_found(work):
    mine, _ = match_ids(work)
    work.objects.remove_object(work.settings.minio.buckets.crops.name, "crops/7.jpg")
    with pytest.raises(NotFound) as missing:
        found_face_image(work, ANNA, mine, VIEW)
    assert missing.value.reason == "image_missing"
    work.index.faces.clear()
    with pytest.raises(NotFound) as gone:
        found_face_image(work, ANNA, mine, VIEW)
    assert gone.value.reason == "face_missing"


def test_the_enrolled_face_is_blurred_until_revealed_by_someone_on_the_case(work):
    with work.sessions() as session:
        photo_id = session.scalars(select(EnrolledPhoto.id)).one()
    stored = work.objects.get_object(work.settings.minio.buckets.references.name, "cases/c1/p-crop.jpg").read()
    light = ViewSettings(blur_radius=8, greyscale=False, language="ja")
    assert Image.open(io.BytesIO(enrolled_face_image(work, ANNA, photo_id, light))).mode == "RGB"
    assert enrolled_face_image(work, ANNA, photo_id, VIEW, reveal=True) == stored
    with pytest.raises(Forbidden):
        enrolled_face_image(work, BEN, photo_id, VIEW)
    with pytest.raises(NotFound):
        enrolled_face_image(work, ANNA, photo_id + 1, VIEW)
    assert audit_rows(work) == [("reveal", "ok", "c1", f"photo:{photo_id}"),
                                ("view_image", "rejected", None, f"photo:{photo_id}"),
                                ("view_image", "rejected", None, f"photo:{photo_id + 1}")]
