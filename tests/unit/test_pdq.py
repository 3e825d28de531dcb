"""PDQ through mimamori.media.pdq: the same bits as Meta's C++ reference hasher, hex, Hamming, dihedral."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mimamori.media.pdq import (
    DIHEDRAL,
    PDQ_BYTES,
    PdqHash,
    from_hex,
    hamming,
    pdq_dihedral,
    pdq_hash,
    to_hex,
)

REFERENCE = Path(__file__).with_name("pdq_reference.json")
FACES = ("angelina_jolie", "kate_siegel", "paul_rudd", "shea_whigham", "multiface")


def reference_images(testdata: Path) -> list[tuple[str, Image.Image]]:
    """The photos scripts/pdq-reference hashed with the C++ CLI: the first photo of 20 LFW people
    (250x250) and the five shared portraits scaled to 400 px (the CLI squashes anything over 512)."""
    images = []
    for path in sorted((testdata / "lfw").glob("*/*_0001.jpg"))[:20]:
        images.append((f"lfw/{path.name}", Image.open(path).convert("RGB")))
    for name in FACES:
        image = Image.open(testdata / "faces" / f"{name}.jpg").convert("RGB")
        image.thumbnail((400, 400), Image.Resampling.LANCZOS)
        images.append((f"faces/{name}@400", image))
    return images


def test_equals_the_reference_cpp_hasher(testdata: Path) -> None:
    """Acceptance 3 of issue 20: every bit, the quality and all eight dihedral hashes, on 25 photos."""
    expected = json.loads(REFERENCE.read_text())["images"]
    images = reference_images(testdata)
    assert sorted(expected) == sorted(name for name, _ in images)
    for name, image in images:
        want = expected[name]
        single = pdq_hash(image)
        assert (single.hex, single.quality) == (want["dihedral"][0], want["quality"]), name
        assert [h.hex for h in pdq_dihedral(image)] == want["dihedral"], name


def test_hex_is_threatexchanges_text() -> None:
    bits = bytes(range(PDQ_BYTES))
    text = to_hex(bits)
    assert text == bits.hex() and len(text) == 64
    assert from_hex(text.upper()) == bits
    assert PdqHash.from_hex(text, 90) == PdqHash(bits, 90)
    for bad in ("", "g" * 64, "0" * 63, "0" * 65):
        with pytest.raises(ValueError, match="not a PDQ hash"):
            from_hex(bad)
    with pytest.raises(ValueError):
        PdqHash(b"\0" * 31, 50)
    with pytest.raises(ValueError):
        PdqHash(b"\0" * 32, 101)


def test_hamming_counts_differing_bits() -> None:
    zero, ones = PdqHash(b"\0" * 32, 100), PdqHash(b"\xff" * 32, 100)
    assert hamming(zero, ones) == 256
    assert hamming(zero, zero) == 0
    assert hamming(zero.bits, b"\x01" + b"\0" * 31) == 1
    with pytest.raises(ValueError):
        hamming(b"\0", zero)


@pytest.mark.parametrize("name", ["paul_rudd", "multiface"])
def test_rotations_and_mirrors_land_on_a_dihedral_hash(testdata: Path, name: str) -> None:
    """At full size (1200 and 2048 px); at 256 px the dihedral hashes drift by 16 to 40 bits
    (docs/matching.md), which is why the crop-robust and face signals exist."""
    image = Image.open(testdata / "faces" / f"{name}.jpg").convert("RGB")
    variants = dict(zip(DIHEDRAL, pdq_dihedral(image), strict=True))
    plain = pdq_hash(image)
    for edit in (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270,
                 Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM):
        edited = pdq_hash(image.transpose(edit))
        assert hamming(edited, plain) > 31  # the plain hash alone misses it
        assert min(hamming(edited, v) for v in variants.values()) <= 8, edit


def test_flat_image_has_low_quality() -> None:
    assert pdq_hash(Image.new("RGB", (200, 200), (120, 120, 120))).quality < 50
    assert pdq_hash(Image.new("L", (64, 64), 10)).quality < 50  # any mode: converted to RGB first


def test_a_scraped_picture_is_hashed_scaled_to_fit_and_stays_within_matching_distance(testdata: Path) -> None:
    """``max_side`` (matching.scraped_pdq_max_side): large pictures are hashed from a copy that fits it,
    aspect kept, a few bits from the full picture's hash; pictures that fit are hashed as they are."""
    from mimamori.core.config import MatchingConfig
    from mimamori.media.pdq import fitted

    side = MatchingConfig().scraped_pdq_max_side
    small = Image.open(sorted((testdata / "lfw").glob("*/*_0001.jpg"))[0]).convert("RGB")
    assert pdq_hash(small, side) == pdq_hash(small)
    for name in FACES:
        image = Image.open(testdata / "faces" / f"{name}.jpg").convert("RGB")
        scaled = fitted(image, side)
        assert max(scaled.size) == side and abs(scaled.width / scaled.height - image.width / image.height) < 0.01
        assert pdq_hash(image, side) == pdq_hash(scaled)
        assert hamming(pdq_hash(image, side), pdq_hash(image)) <= 12, name  # of the 31 a match allows
    assert fitted(small, 0) is small


def test_the_hash_computed_without_the_global_lock_equals_pdqhashs_binding(testdata: Path) -> None:
    """pdq_hash calls pdqhash's compiled C++ through ctypes, which lets Python's lock go (the binding
    holds it): the same bits and quality as ``pdqhash.compute``, at a range of shapes the pipeline hashes,
    from a 4-pixel strip (too small: a cleared hash) to a full photo, and on a flat picture."""
    import numpy as np
    import pdqhash

    from mimamori.media import pdq

    assert pdq._compute is not pdqhash.compute  # the pinned pdqhash exports the function
    photos = [Image.open(path).convert("RGB") for path in sorted((testdata / "lfw").glob("*/*_0001.jpg"))[:30]]
    photos += [Image.open(testdata / "faces" / f"{name}.jpg").convert("RGB") for name in FACES]
    shapes = [photo.resize(size) for size in ((4, 300), (5, 5), (64, 64), (333, 71)) for photo in photos[:3]]
    for image in [*photos, *shapes, photos[0].rotate(9, expand=True), Image.new("RGB", (90, 60), (7, 7, 7))]:
        pixels = pdq._pixels(image)
        vector, quality = pdq._compute(pixels)
        expected_vector, expected_quality = pdqhash.compute(pixels)
        assert quality == expected_quality and np.array_equal(vector, expected_vector), image.size


def test_without_the_exported_function_the_binding_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another pdqhash build that does not export the C++ function: the binding's own compute."""
    import pdqhash

    from mimamori.media import pdq

    monkeypatch.setattr(pdq, "_HASH_FROM_LUMA", "no_such_symbol")
    assert pdq._gil_free_hasher() is None
    assert pdq._hasher() is pdqhash.compute
