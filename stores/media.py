"""Indexed media and sightings, in Milvus, keyed so that every write is an idempotent upsert.

* ``media_<model>_v2``: one row per distinct media content (sha256) that the model has
  indexed, with its perceptual hash as a binary vector, so exact and near duplicates are
  found with one query or one Hamming search, and the orientation the decoder applied
  (``rotation`` clockwise degrees after a left-right flip if ``mirrored``: a phone video's
  display matrix or a photo's EXIF), so a thumbnail of the stored file is shown upright.
  Version 2 added those two fields; version 1 collections are left as they were.
* ``sightings_v1``: one row per place a media item was seen (media id, URL, platform,
  dates), linked to the indexed media it shows (``canonical_sha256``). Re-uploads are what
  users hunt for: each one is a sighting, none is embedded twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pymilvus import Collection, CollectionSchema, DataType, FieldSchema

from mimamori.core.config import Settings
from mimamori.stores.milvus import ensure_collection

PHASH_BITS = 64
SCHEMA_VERSION = 1  # of the sightings collection
MEDIA_SCHEMA_VERSION = 2  # of the media collections: v2 records the orientation applied
# An unknown page URL is stored as this, never as "": Milvus 2.3.5 cannot memory-map a string
# column of zero bytes (milvus#31406, fixed in 2.3.12), so a sealed segment of sightings whose
# page URLs were all unknown would never load (stores/writer.py refuses empty strings).
NO_PAGE_URL = "-"


def stored_page_url(page_url: str | None) -> str:
    return page_url or NO_PAGE_URL


def page_url_from_store(value: str) -> str:
    """The page URL a sighting was reported with; "" if the scraper did not know it."""
    return "" if value in (NO_PAGE_URL, "") else value


def int64_key(*parts: str) -> int:
    """A stable positive int64 primary key from text parts."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def media_collection_name(settings: Settings, model_name: str | None = None) -> str:
    return f"{settings.milvus.media_collection_prefix}_{settings.model_tag(model_name)}_v{MEDIA_SCHEMA_VERSION}"


def sightings_collection_name(settings: Settings) -> str:
    return settings.milvus.sightings_collection


def media_schema() -> CollectionSchema:
    """One row per distinct media content the model has indexed."""
    return CollectionSchema([
        FieldSchema("media_key", DataType.INT64, is_primary=True),
        FieldSchema("phash", DataType.BINARY_VECTOR, dim=PHASH_BITS),
        FieldSchema("sha256", DataType.VARCHAR, max_length=64),
        FieldSchema("kind", DataType.VARCHAR, max_length=16),
        FieldSchema("width", DataType.INT32),
        FieldSchema("height", DataType.INT32),
        FieldSchema("face_count", DataType.INT32),
        FieldSchema("rotation", DataType.INT32),
        FieldSchema("mirrored", DataType.BOOL),
        FieldSchema("first_media_id", DataType.VARCHAR, max_length=200),
        FieldSchema("model_version", DataType.VARCHAR, max_length=128),
        FieldSchema("indexed_at", DataType.INT64),
    ], description=json.dumps({"kind": "mimamori-media", "schema_version": MEDIA_SCHEMA_VERSION}))


def sightings_schema() -> CollectionSchema:
    """One row per place a media item was seen."""
    return CollectionSchema([
        FieldSchema("sighting_key", DataType.INT64, is_primary=True),
        FieldSchema("phash", DataType.BINARY_VECTOR, dim=PHASH_BITS),
        FieldSchema("media_sha256", DataType.VARCHAR, max_length=64),
        FieldSchema("canonical_sha256", DataType.VARCHAR, max_length=64),
        FieldSchema("match", DataType.VARCHAR, max_length=16),  # original, exact or near
        FieldSchema("media_id", DataType.VARCHAR, max_length=200),
        FieldSchema("source_url", DataType.VARCHAR, max_length=2048),
        FieldSchema("page_url", DataType.VARCHAR, max_length=2048),
        FieldSchema("platform", DataType.VARCHAR, max_length=64),
        FieldSchema("posted_at", DataType.INT64),
        FieldSchema("scraped_at", DataType.INT64),
    ], description=json.dumps({"kind": "mimamori-sightings", "schema_version": SCHEMA_VERSION}))


# Both are searched by perceptual hash: exact Hamming search over 64-bit vectors.
PHASH_INDEX = {"index_type": "BIN_FLAT", "metric_type": "HAMMING", "params": {}}


def ensure_media_collections(settings: Settings, model_name: str | None = None) -> tuple[Collection, Collection]:
    media = ensure_collection(settings, media_collection_name(settings, model_name), media_schema(), "phash",
                              PHASH_INDEX, ["sha256"])
    sightings = ensure_collection(settings, sightings_collection_name(settings), sightings_schema(), "phash",
                                  PHASH_INDEX, ["canonical_sha256", "media_sha256"])
    return media, sightings


@dataclass(frozen=True)
class KnownMedia:
    sha256: str
    match: str  # "original" (a replay of the first upload), "exact" or "near"
    distance: int


class MediaIndex:
    """Looks up whether media content is already indexed (exactly, or nearly by perceptual hash)."""

    def __init__(self, media: Collection, sightings: Collection, near_distance: int, aspect_tolerance: float = 0.02):
        self.media, self.sightings = media, sightings
        self.near_distance = near_distance
        self.aspect_tolerance = aspect_tolerance

    @classmethod
    def open(cls, settings: Settings) -> MediaIndex:
        """The index over the configured model's media collection."""
        return cls(*ensure_media_collections(settings), settings.pipeline.near_duplicate_distance)

    def find(self, sha256: str, media_id: str, phash: bytes, width: int, height: int) -> KnownMedia | None:
        # Session consistency: this process reads its own writes without waiting for the
        # cluster-wide timestamp that Strong waits for (~0.2 s a call). A copy indexed a moment
        # ago by another worker may be missed; it is then indexed again under the same keys,
        # which changes nothing (every write is an upsert).
        rows = self.media.query(f'sha256 == "{sha256}"', output_fields=["first_media_id"], limit=1,
                                consistency_level="Session")
        if rows:
            return KnownMedia(sha256, "original" if rows[0]["first_media_id"] == media_id else "exact", 0)
        hits = self.media.search([phash], "phash", {"metric_type": "HAMMING", "params": {}}, limit=3,
                                 output_fields=["sha256", "width", "height"], consistency_level="Session")[0]
        aspect = width / height
        for hit in hits:
            other = hit.entity.get("width") / max(1, hit.entity.get("height"))
            if hit.distance <= self.near_distance and abs(other - aspect) <= self.aspect_tolerance * aspect:
                return KnownMedia(hit.entity.get("sha256"), "near", int(hit.distance))
        return None
