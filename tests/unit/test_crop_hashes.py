"""The crop-robust signal (mimamori/media/crop_hashes.py): windows anchored on faces, and border trimming.

The windows are defined by the face, not by the frame: a crop, a paste or a shrink that keeps
the face keeps its windows' pixels, so their PDQ matches the reference's; a mirror matches one
of the reference's dihedral variants. Faces here are given as boxes (the geometry is the
module's job, the detector's is tested elsewhere), on a real shared photo.
"""

from __future__ import annotations

import pytest
from PIL import Image, ImageOps

from mimamori.media import crop_hashes
from mimamori.media.pdq import hamming
from tests.support import edits


@pytest.fixture(scope="module")
def portrait(testdata) -> Image.Image:
    image = Image.open(testdata / "faces" / "paul_rudd.jpg").convert("RGB")
    return ImageOps.contain(image, (600, 600))


def face_box(image: Image.Image) -> tuple[float, float, float, float]:
    """A face-sized box in the middle of the portrait (where its face is)."""
    w, h = image.size
    return (0.35 * w, 0.25 * h, 0.65 * w, 0.55 * h)


def best(copy: list[crop_hashes.WindowHash], reference: list[crop_hashes.WindowHash]) -> int:
    return min(hamming(c.hashes[0], r) for c in copy for ref in reference for r in ref.hashes)


def test_windows_are_centred_squares_at_the_multiples_of_the_face():
    windows = crop_hashes.face_windows((1000, 1000), [(400, 400, 500, 520)], multiples=(1.5, 2.5))
    assert [w.multiple for w in windows] == [1.5, 2.5]
    for window in windows:
        x1, y1, x2, y2 = window.box
        assert x2 - x1 == y2 - y1 == round(120 * window.multiple)
        assert (x1 + x2) / 2 == pytest.approx(450, abs=1) and (y1 + y2) / 2 == pytest.approx(460, abs=1)


def test_windows_mostly_outside_the_picture_or_of_tiny_faces_are_left_out():
    # A face at the corner: its 2.5x window lies mostly outside, the 1.5x one not by more than 20%.
    windows = crop_hashes.face_windows((400, 400), [(0, 0, 100, 100)], multiples=(1.0, 2.5))
    assert [w.multiple for w in windows] == [1.0]
    assert crop_hashes.face_windows((400, 400), [(10, 10, 18, 18)]) == []


def test_a_crop_that_keeps_the_face_matches_the_reference_windows(portrait):
    box = face_box(portrait)
    reference = crop_hashes.window_hashes(portrait, [box], reference=True)
    assert reference and all(len(r.hashes) == 8 for r in reference)
    left, top = round(0.15 * portrait.width), round(0.1 * portrait.height)
    cropped = portrait.crop((left, top, portrait.width - round(0.05 * portrait.width), portrait.height))
    moved = (box[0] - left, box[1] - top, box[2] - left, box[3] - top)
    copy = crop_hashes.window_hashes(cropped, [moved], reference=False)
    assert copy and all(len(c.hashes) == 1 for c in copy)
    assert best(copy, reference) <= crop_hashes.MATCH_DISTANCE
    # The whole-picture PDQ of the same crop does not match: that is what the windows are for.
    from mimamori.media.pdq import DEFAULT_MAX_DISTANCE, pdq_hash
    assert hamming(pdq_hash(cropped), pdq_hash(portrait)) > DEFAULT_MAX_DISTANCE


def test_a_mirrored_copy_matches_a_dihedral_variant_and_another_photo_does_not(portrait, testdata):
    box = face_box(portrait)
    reference = crop_hashes.window_hashes(portrait, [box], reference=True)
    mirrored = edits.mirror(portrait)
    w = portrait.width
    copy = crop_hashes.window_hashes(mirrored, [(w - box[2], box[1], w - box[0], box[3])], reference=False)
    assert best(copy, reference) <= crop_hashes.MATCH_DISTANCE
    assert min(hamming(c.hashes[0], ref.hashes[0]) for c in copy for ref in reference) > crop_hashes.MATCH_DISTANCE
    other = ImageOps.contain(Image.open(testdata / "faces" / "kate_siegel.jpg").convert("RGB"), (600, 600))
    unrelated = crop_hashes.window_hashes(other, [face_box(other)], reference=False)
    assert best(unrelated, reference) > crop_hashes.MATCH_DISTANCE + 16


def test_trim_border_takes_off_uniform_bands_and_nothing_else(portrait):
    bordered = edits.border(portrait, 0.1, (0, 0, 0))
    trimmed = crop_hashes.trim_border(bordered)
    assert trimmed is not None
    assert abs(trimmed.width - portrait.width) <= 2 and abs(trimmed.height - portrait.height) <= 2
    assert crop_hashes.trim_border(portrait) is None
    # A picture that is mostly one colour is not trimmed down to a speck.
    flat = Image.new("RGB", (300, 300), (200, 200, 200))
    flat.paste(Image.new("RGB", (20, 20), (0, 0, 0)), (140, 140))
    assert crop_hashes.trim_border(flat) is None


def test_a_screenshot_trimmed_matches_the_original_pdq(portrait):
    from mimamori.media.pdq import DEFAULT_MAX_DISTANCE, pdq_hash

    shot = edits.screenshot(portrait)
    assert hamming(pdq_hash(shot), pdq_hash(portrait)) > DEFAULT_MAX_DISTANCE
    trimmed = crop_hashes.trim_border(shot)
    assert trimmed is not None
    assert hamming(pdq_hash(trimmed), pdq_hash(portrait)) <= DEFAULT_MAX_DISTANCE
