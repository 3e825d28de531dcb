"""Dedupe decisions: exact (sha256), near (pHash within a few bits, same aspect), original or new.

``MediaIndex.find`` (stores/media.py) runs over an in-memory media collection, and the
``Dedupe`` stage (transforms/dedupe.py) over that index, as the pipeline sets it up.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from apache_beam import pvalue

from mimamori.core.config import Settings
from mimamori.media.decode import DecodedMedia
from mimamori.stores.media import KnownMedia, int64_key
from mimamori.streams.events import KafkaRecord, MediaEvent, now_utc
from mimamori.transforms.dedupe import SIGHTING, Dedupe
from mimamori.transforms.elements import MediaItem
from tests.support.memory import MemoryStores

PHASH = bytes.fromhex("f0e1d2c3b4a59687")
SHA = "a" * 64


def flipped(phash: bytes, bits: int) -> bytes:
    """``phash`` with its first ``bits`` bits inverted: that many bits of Hamming distance."""
    value = int.from_bytes(phash, "big") ^ (((1 << bits) - 1) << (64 - bits))
    return value.to_bytes(8, "big")


@pytest.fixture
def stores(offline_settings: Settings) -> Iterator[MemoryStores]:
    """An in-memory media collection holding one indexed photo: SHA, 600x400, PHASH, first seen as site:1."""
    stores = MemoryStores(offline_settings)
    stores.media.upsert([{"media_key": int64_key(SHA), "sha256": SHA, "phash": PHASH, "width": 600, "height": 400,
                          "first_media_id": "site:1", "face_count": 1}])
    yield stores
    stores.close()


@pytest.fixture
def index(stores: MemoryStores, offline_settings: Settings):
    return stores.media_index(offline_settings)


def test_the_same_bytes_are_the_original_under_its_own_id_and_an_exact_copy_under_another(index):
    assert index.find(SHA, "site:1", PHASH, 600, 400) == KnownMedia(SHA, "original", 0)
    assert index.find(SHA, "site:2", flipped(PHASH, 30), 10, 10) == KnownMedia(SHA, "exact", 0)  # by sha alone


@pytest.mark.parametrize("bits", [1, 6])
def test_other_bytes_within_the_near_distance_and_of_the_same_aspect_are_a_near_copy(index, bits):
    assert index.near_distance == 6
    assert index.find("b" * 64, "site:2", flipped(PHASH, bits), 300, 200) == KnownMedia(SHA, "near", bits)


@pytest.mark.parametrize("phash, width, height", [
    (flipped(PHASH, 7), 600, 400),  # one bit too far
    (PHASH, 600, 500),  # same hash, another shape: a crop or a border
    (PHASH, 600, 412),  # 3 % off the aspect ratio (2 % is tolerated)
])
def test_other_bytes_too_far_or_of_another_aspect_are_new(index, phash, width, height):
    assert index.find("b" * 64, "site:2", phash, width, height) is None


def test_a_resize_within_the_aspect_tolerance_is_still_near(index):
    assert index.find("b" * 64, "site:2", PHASH, 600, 405).match == "near"  # 1.2 % off


def item(media_id: str, sha: str, phash: bytes = PHASH, width: int = 600, height: int = 400) -> MediaItem:
    event = MediaEvent(media_id=media_id, source_url=f"https://example.test/{media_id}", platform="example",
                       scraped_at=now_utc(), content_type="image/jpeg", object_key=f"raw/{sha[:2]}/{sha}")
    record = KafkaRecord("media.scraped", 0, 0, None, media_id.encode(), event.to_json())
    return MediaItem(record, event, DecodedMedia(sha, "image", width, height), phash)


def decide(stage: Dedupe, items: list[MediaItem]) -> list[tuple[str, str | None]]:
    """(media id, match) per item in one bundle: "new" for items that go on to detection."""
    stage.start_bundle()
    decided = []
    for one in items:
        for output in stage.process(one):
            if isinstance(output, pvalue.TaggedOutput):
                assert output.tag == SIGHTING, output
                decided.append((output.value.event.media_id, output.value.known.match))
            else:
                decided.append((output.event.media_id, "new"))
    return decided


def dedupe(settings: Settings, stores: MemoryStores) -> Dedupe:
    stage = Dedupe(settings, stores.backends())
    stage.setup()
    return stage


def test_the_stage_sends_copies_to_the_sightings_and_new_media_on(offline_settings, stores):
    stage = dedupe(offline_settings, stores)
    decided = decide(stage, [item("site:1", SHA), item("site:2", SHA), item("site:3", "b" * 64, flipped(PHASH, 2)),
                             item("site:4", "c" * 64, flipped(PHASH, 40))])
    assert decided == [("site:1", "original"), ("site:2", "exact"), ("site:3", "near"), ("site:4", "new")]


def test_two_copies_in_one_bundle_make_one_original_and_one_sighting(offline_settings, stores):
    """Media of the bundle is not written yet: the stage remembers it, keyed by sha256."""
    stage = dedupe(offline_settings, stores)
    copies = [item(media_id, "d" * 64, flipped(PHASH, 40)) for media_id in ("site:5", "site:6", "site:5", "site:6")]
    # The same record read twice goes on twice: its writes land on the same keys.
    assert decide(stage, copies[:3]) == [("site:5", "new"), ("site:6", "exact"), ("site:5", "new")]
    assert decide(stage, copies[3:]) == [("site:6", "new")]  # a new bundle: forgotten (nothing was written)


def test_reprocessing_sends_the_original_through_again_but_not_its_copies(offline_settings, stores):
    offline_settings.pipeline.reprocess_indexed = True
    stage = dedupe(offline_settings, stores)
    assert decide(stage, [item("site:1", SHA), item("site:2", SHA)]) == [("site:1", "new"), ("site:2", "exact")]
