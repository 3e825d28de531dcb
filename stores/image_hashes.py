"""PDQ hashes in Milvus: binary vectors of 256 bits, searched by Hamming distance.

One collection per hash kind, as the face collections are one per model:

* ``pdq_media_v1`` (``matching.pdq_collection``): every scraped image and every sampled video
  frame, one row per (media sha256, frame time), keyed by content so a replay upserts the same
  row. BIN_IVF_FLAT: it grows with the index (``matching.pdq_nlist``/``pdq_nprobe``).
* ``pdq_references_v1`` (``matching.reference_collection``): the reference hashes of the cases,
  the eight dihedral variants of each reference frame and hashes imported from a partner's list,
  one partition per case (withdrawal drops it). Small: BIN_FLAT, exact.

Hits are filtered here by the match distance: Milvus returns the nearest, whatever their distance.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from pymilvus import Collection, CollectionSchema, DataType, FieldSchema

from mimamori.core.config import Settings
from mimamori.media.pdq import PDQ_BITS, PdqHash
from mimamori.stores.enrolled import case_partition
from mimamori.stores.media import int64_key
from mimamori.stores.milvus import ensure_collection, seen_writes

SCHEMA_VERSION = 1
MAX_LIMIT = 16384  # Milvus's top-k ceiling


def pdq_key(media_sha256: str, frame_ms: int) -> int:
    """The row key of a scraped frame's hash; also the ``face_id`` of a match found by it alone
    (sha256-derived 63-bit keys of another namespace than face ids)."""
    return int64_key("pdq", media_sha256, str(frame_ms))


def reference_key(case_id: str, reference_sha256: str, frame_ms: int, variant: str) -> int:
    return int64_key("pdq-ref", case_id, reference_sha256, str(frame_ms), variant)


def pdq_schema() -> CollectionSchema:
    """One row per scraped frame."""
    fields = [
        FieldSchema("pdq_key", DataType.INT64, is_primary=True, auto_id=False),
        FieldSchema("pdq", DataType.BINARY_VECTOR, dim=PDQ_BITS),
        FieldSchema("media_sha256", DataType.VARCHAR, max_length=64),
        FieldSchema("frame_ms", DataType.INT64),
        FieldSchema("quality", DataType.INT32),
        FieldSchema("indexed_at", DataType.INT64),
    ]
    return CollectionSchema(fields, description=json.dumps({"kind": "mimamori-pdq-media",
                                                            "schema_version": SCHEMA_VERSION}))


def ensure_pdq_collection(settings: Settings) -> Collection:
    index = {"index_type": "BIN_IVF_FLAT", "metric_type": "HAMMING", "params": {"nlist": settings.matching.pdq_nlist}}
    return ensure_collection(settings, settings.matching.pdq_collection, pdq_schema(), "pdq", index,
                             ["media_sha256"])


def ensure_reference_collection(settings: Settings) -> Collection:
    fields = [
        FieldSchema("ref_key", DataType.INT64, is_primary=True, auto_id=False),
        FieldSchema("pdq", DataType.BINARY_VECTOR, dim=PDQ_BITS),
        FieldSchema("case_id", DataType.VARCHAR, max_length=64),
        FieldSchema("reference_sha256", DataType.VARCHAR, max_length=64),
        FieldSchema("frame_ms", DataType.INT64),
        FieldSchema("variant", DataType.VARCHAR, max_length=16),
        FieldSchema("quality", DataType.INT32),
    ]
    description = json.dumps({"kind": "mimamori-pdq-references", "schema_version": SCHEMA_VERSION})
    return ensure_collection(settings, settings.matching.reference_collection,
                             CollectionSchema(fields, description=description), "pdq",
                             {"index_type": "BIN_FLAT", "metric_type": "HAMMING", "params": {}})


def pdq_row(media_sha256: str, frame_ms: int, hashed: PdqHash, indexed_at: int) -> dict:
    """The Milvus row of one scraped frame's hash (the pipeline's writer upserts it)."""
    return {"pdq_key": pdq_key(media_sha256, frame_ms), "pdq": hashed.bits, "media_sha256": media_sha256,
            "frame_ms": int(frame_ms), "quality": int(hashed.quality), "indexed_at": int(indexed_at)}


@dataclass(frozen=True)
class ReferenceHash:
    """One reference hash of a case: a dihedral variant of a reference frame, or an imported hash."""

    case_id: str
    reference_sha256: str  # the reference media's sha256 (an imported list: the list's)
    frame_ms: int
    variant: str  # mimamori.media.pdq.DIHEDRAL, or "imported"
    hash: PdqHash


@dataclass(frozen=True)
class ReferenceHit:
    reference: ReferenceHash
    distance: int


@dataclass(frozen=True)
class MediaHashHit:
    media_sha256: str
    frame_ms: int
    quality: int
    distance: int


class ReferenceHashes:
    """The cases' reference hashes (one partition per case)."""

    def __init__(self, settings: Settings, collection: Collection | None = None):
        self.collection = collection if collection is not None else ensure_reference_collection(settings)
        self.clock_skew_s = settings.milvus.clock_skew_s

    def _partitions(self) -> set[str]:
        return {partition.name for partition in self.collection.partitions}

    def add(self, hashes: list[ReferenceHash]) -> int:
        """Upsert reference hashes (idempotent: keyed by case, reference, frame and variant)."""
        by_case: dict[str, list[ReferenceHash]] = {}
        for item in hashes:
            by_case.setdefault(item.case_id, []).append(item)
        for case_id, items in by_case.items():
            partition = case_partition(case_id)
            if partition not in self._partitions():
                self.collection.create_partition(partition)
                self.collection.load()
            rows = [{"ref_key": reference_key(h.case_id, h.reference_sha256, h.frame_ms, h.variant),
                     "pdq": h.hash.bits, "case_id": h.case_id, "reference_sha256": h.reference_sha256,
                     "frame_ms": int(h.frame_ms), "variant": h.variant, "quality": int(h.hash.quality)}
                    for h in items]
            self.collection.upsert(rows, partition_name=partition)
        return len(hashes)

    def nearest(self, hashes: list[bytes], case_ids: list[str], max_distance: int,
                top_k: int, written_by: dt.datetime | None = None) -> list[list[ReferenceHit]]:
        """For each hash, the reference hashes of these cases within ``max_distance`` bits, nearest first.

        A frame scraped just after an enrolment must see its references: ``written_by`` is when the
        newest of these cases' reference hashes were written (``ReferenceMedia.hashes_written_at``),
        and the search sees every write up to then (``seen_writes``); None: every write up to now.
        """
        existing = self._partitions()
        partitions = [p for p in map(case_partition, case_ids) if p in existing]
        if not hashes or not partitions:
            return [[] for _ in hashes]
        results = self.collection.search(list(hashes), "pdq", {"metric_type": "HAMMING", "params": {}},
                                         limit=min(top_k, MAX_LIMIT), partition_names=partitions,
                                         output_fields=["case_id", "reference_sha256", "frame_ms", "variant",
                                                        "quality", "pdq"],
                                         **seen_writes(written_by, self.clock_skew_s))
        return [[ReferenceHit(_reference(hit.entity), int(hit.distance)) for hit in hits
                 if hit.distance <= max_distance] for hits in results]

    def of_case(self, case_id: str) -> list[ReferenceHash]:
        partition = case_partition(case_id)
        if partition not in self._partitions():
            return []
        rows = self.collection.query(f"case_id == {json.dumps(case_id)}", limit=MAX_LIMIT,
                                     output_fields=["case_id", "reference_sha256", "frame_ms", "variant", "quality",
                                                    "pdq"], partition_names=[partition], consistency_level="Strong")
        return sorted((_reference(row) for row in rows),
                      key=lambda r: (r.reference_sha256, r.frame_ms, r.variant))

    def count(self, case_id: str) -> int:
        return len(self.of_case(case_id))

    def delete_case(self, case_id: str) -> None:
        """Drop the case's partition: its hashes go with it."""
        partition = case_partition(case_id)
        if partition in self._partitions():
            self.collection.partition(partition).release()
            self.collection.drop_partition(partition)


def _reference(entity) -> ReferenceHash:
    get = entity.get
    bits = get("pdq")
    bits = bits[0] if isinstance(bits, list) else bits  # pymilvus returns a binary vector as [bytes]
    return ReferenceHash(get("case_id"), get("reference_sha256"), int(get("frame_ms")), get("variant"),
                         PdqHash(bytes(bits), int(get("quality"))))


class MediaHashes:
    """The scraped frames' hashes: what a new reference is searched against (the retro search)."""

    def __init__(self, settings: Settings, collection: Collection | None = None):
        self.collection = collection if collection is not None else ensure_pdq_collection(settings)
        self.nprobe = settings.matching.pdq_nprobe

    def within(self, hashes: list[bytes], max_distance: int, top_k: int = MAX_LIMIT) -> list[list[MediaHashHit]]:
        if not hashes:
            return []
        results = self.collection.search(list(hashes), "pdq",
                                         {"metric_type": "HAMMING", "params": {"nprobe": self.nprobe}},
                                         limit=min(top_k, MAX_LIMIT),
                                         output_fields=["media_sha256", "frame_ms", "quality"],
                                         consistency_level="Strong")
        return [[MediaHashHit(hit.entity.get("media_sha256"), int(hit.entity.get("frame_ms")),
                              int(hit.entity.get("quality")), int(hit.distance))
                 for hit in hits if hit.distance <= max_distance] for hits in results]
