"""Read the indexed faces by vector: the nearest faces, faces above a threshold, their sightings.

Each hit carries the face (similarity, box, quality), the media it was found in, every
sighting of that media (URLs, platforms, dates: re-uploads are what staff look for) and a
time-limited link to the face crop in MinIO. Filters on platform and posting date; paging
with offset and limit.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pymilvus import Collection
from pymilvus.exceptions import MilvusException

from mimamori.core.config import Settings
from mimamori.core.errors import Misconfigured
from mimamori.core.timefmt import iso_z_from_epoch
from mimamori.stores.faces import alias_target, ensure_face_collection, search_collection
from mimamori.stores.media import ensure_media_collections, page_url_from_store
from mimamori.stores.objects import object_client

log = logging.getLogger(__name__)

# Milvus's largest result window (topk per query vector, and rows per query).
MAX_RESULTS = 16384
FACE_FIELDS = ["face_id", "media_sha256", "source_url", "platform", "posted_at", "indexed_at", "box", "det_score",
               "quality", "model_version", "crop_key", "frame_ms"]


@dataclass
class Sighting:
    media_id: str
    source_url: str
    page_url: str
    platform: str
    posted_at: str | None
    scraped_at: str | None
    match: str  # original, exact or near


@dataclass
class FaceHit:
    face_id: int
    similarity: float
    media_sha256: str
    source_url: str
    platform: str
    posted_at: str | None
    box: dict[str, float]
    quality: float
    model_version: str
    frame_ms: int
    crop_key: str
    crop_url: str | None = None
    sightings: list[Sighting] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StoredFace:
    """One indexed face read by its id (no query vector, so no similarity): what a reviewer sees of it."""

    face_id: int
    media_sha256: str
    source_url: str
    platform: str
    posted_at: str | None
    indexed_at: str | None
    box: dict[str, float]
    quality: float
    model_version: str
    frame_ms: int
    crop_key: str


def _iso(epoch: int | None) -> str | None:
    return iso_z_from_epoch(epoch) if epoch else None


def _filter(platform: str | None, posted_from: dt.datetime | None, posted_to: dt.datetime | None) -> str | None:
    clauses = []
    if platform:
        clauses.append(f"platform == {json.dumps(platform)}")
    if posted_from:
        clauses.append(f"posted_at >= {int(posted_from.timestamp())}")
    if posted_to:
        clauses.append(f"posted_at <= {int(posted_to.timestamp())}")
    return " and ".join(clauses) or None


class FaceSearch:
    def __init__(self, settings: Settings, model: str | None = None):
        """Search ``model``'s face collection, or (no model) the one the search alias points to."""
        self.settings = settings
        self.pinned_model = model
        # Through the search alias when one is set (mimamori collections promote): queries must
        # then be embedded with ``self.model``, the model of that collection's vectors.
        # (collection, model), swapped whole so that a request never pairs one with the other's.
        self._target: tuple[Collection, str] = (
            search_collection(settings) if model is None else (ensure_face_collection(settings, model), model))
        # The media rows (one per distinct content, with its pHash) of this model; the sightings are shared.
        self.media, self.sightings = ensure_media_collections(settings, model)
        self._objects = None

    @property
    def faces(self) -> Collection:
        return self._target[0]

    @property
    def model(self) -> str:
        return self._target[1]

    def follow_alias(self) -> tuple[Collection, str]:
        """The (collection, model) one request should use: where the search alias points now.

        A long-lived searcher (the API's, shared by concurrent requests) calls this before each
        request and passes the collection on, so a promotion takes effect with no restart and a
        request never embeds with one model and searches another's vectors. When the alias has
        not moved it costs two small Milvus calls.
        """
        if self.pinned_model is None:
            target = alias_target(self.settings)
            if target is not None and target != self._target[0].name:
                self._target = search_collection(self.settings)
        return self._target

    def nearest_faces(self, vectors: np.ndarray, top_k: int, offset: int = 0, platform: str | None = None,
                      posted_from: dt.datetime | None = None, posted_to: dt.datetime | None = None,
                      collection: Collection | None = None) -> list[list[FaceHit]]:
        """The indexed faces closest to each vector, best first (no sightings or links)."""
        if len(vectors) == 0:
            return []
        params = {"metric_type": self.settings.milvus.index.metric_type,
                  "params": dict(self.settings.milvus.index.search_params), "offset": offset}
        return self._search(collection or self.faces, vectors, params, top_k,
                            _filter(platform, posted_from, posted_to))

    def faces_above(self, vectors: np.ndarray, threshold: float) -> list[list[FaceHit]]:
        """Every indexed face at or above ``threshold`` for each vector (a range search), best first."""
        if len(vectors) == 0:
            return []
        if self.settings.milvus.index.metric_type == "L2":
            raise Misconfigured("a similarity threshold needs the IP or COSINE metric, not L2")
        params = {"metric_type": self.settings.milvus.index.metric_type,
                  "params": {**self.settings.milvus.index.search_params,
                             "radius": threshold - 1e-6, "range_filter": 1.0 + 1e-6}}
        return self._search(self.faces, vectors, params, MAX_RESULTS, min_distance=threshold)

    def nearest_with_vectors(self, vector: np.ndarray, top_k: int) -> tuple[list[FaceHit], np.ndarray]:
        """The ``top_k`` indexed faces nearest one vector, best first, with their stored vectors.

        For a per-case model's hard negatives (issue 20): one search, then one query of the found ids
        for their vectors (vector output of a search varies across Milvus versions; a query's does not).
        """
        hits = self.nearest_faces(np.asarray(vector, dtype=np.float32)[None, :], min(top_k, MAX_RESULTS))[0]
        stored = self.vectors_of([hit.face_id for hit in hits])
        kept = [hit for hit in hits if hit.face_id in stored]  # a face deleted between the two calls
        return kept, np.array([stored[hit.face_id] for hit in kept], dtype=np.float32).reshape(len(kept), len(vector))

    def vectors_of(self, face_ids: list[int] | set[int]) -> dict[int, np.ndarray]:
        """The stored vectors of these faces, by id, in one query (ids not in the collection left out)."""
        ids = sorted({int(i) for i in face_ids})[:MAX_RESULTS]
        if not ids:
            return {}
        rows = self.faces.query(f"face_id in {json.dumps(ids)}", limit=len(ids), output_fields=["face_id", "embedding"],
                                consistency_level="Strong")
        return {int(row["face_id"]): np.asarray(row["embedding"], dtype=np.float32) for row in rows}

    def _search(self, collection: Collection, vectors: np.ndarray, params: dict[str, Any], limit: int,
                expr: str | None = None, min_distance: float | None = None) -> list[list[FaceHit]]:
        """One batched Milvus search; hits below ``min_distance`` (the raw score, before rounding) dropped."""
        results = collection.search(np.asarray(vectors, dtype=np.float32).tolist(), "embedding", params,
                                    limit=limit, expr=expr, output_fields=FACE_FIELDS, consistency_level="Strong")
        return [[self._hit(hit) for hit in hits if min_distance is None or hit.distance >= min_distance]
                for hits in results]

    @staticmethod
    def _hit(hit: Any) -> FaceHit:
        e = hit.entity
        return FaceHit(face_id=int(hit.id), similarity=round(float(hit.distance), 4),
                       media_sha256=e.get("media_sha256"), source_url=e.get("source_url"),
                       platform=e.get("platform"), posted_at=_iso(e.get("posted_at")), box=e.get("box"),
                       quality=float(e.get("quality")), model_version=e.get("model_version"),
                       frame_ms=int(e.get("frame_ms")), crop_key=e.get("crop_key"))

    def search(self, vectors: np.ndarray, top_k: int = 10, offset: int = 0, platform: str | None = None,
               posted_from: dt.datetime | None = None, posted_to: dt.datetime | None = None,
               with_links: bool = True, collection: Collection | None = None) -> list[FaceHit]:
        """One ranked list for one or more query vectors (a face seen in several query vectors keeps its best)."""
        best: dict[int, FaceHit] = {}
        for hits in self.nearest_faces(vectors, top_k + offset, 0, platform, posted_from, posted_to, collection):
            for hit in hits:
                if hit.face_id not in best or hit.similarity > best[hit.face_id].similarity:
                    best[hit.face_id] = hit
        ranked = sorted(best.values(), key=lambda h: h.similarity, reverse=True)[offset:offset + top_k]
        self._attach_sightings(ranked)
        if with_links:
            for hit in ranked:
                hit.crop_url = self.crop_link(hit.crop_key)
        return ranked

    def _attach_sightings(self, hits: list[FaceHit]) -> None:
        by_media = self.sightings_of({hit.media_sha256 for hit in hits})
        for hit in hits:
            hit.sightings = by_media.get(hit.media_sha256, [])

    def faces_by_id(self, face_ids: set[int] | list[int], collection: Collection | None = None
                    ) -> dict[int, StoredFace]:
        """The faces of these ids, in one query by primary key (ids not in the collection are left out)."""
        ids = sorted({int(i) for i in face_ids})
        if not ids:
            return {}
        rows = (collection or self.faces).query(f"face_id in {json.dumps(ids)}", limit=min(len(ids), MAX_RESULTS),
                                                output_fields=FACE_FIELDS, consistency_level="Strong")
        return {int(row["face_id"]): StoredFace(
            face_id=int(row["face_id"]), media_sha256=row["media_sha256"], source_url=row["source_url"],
            platform=row["platform"], posted_at=_iso(row.get("posted_at")), indexed_at=_iso(row.get("indexed_at")),
            box=dict(row.get("box") or {}), quality=float(row.get("quality") or 0.0),
            model_version=row["model_version"], frame_ms=int(row.get("frame_ms") or 0), crop_key=row["crop_key"])
            for row in rows}

    def media_phashes(self, media_sha256: set[str]) -> dict[str, str]:
        """Each media's perceptual hash (16 hex digits, as the pipeline gives matches), from one query of
        the media collection by its sha256 index; {} if Milvus cannot say (the hash only helps clustering)."""
        shas = sorted(media_sha256)
        if not shas:
            return {}
        try:
            rows = self.media.query(f"sha256 in {json.dumps(shas)}", limit=MAX_RESULTS,
                                    output_fields=["sha256", "phash"], consistency_level="Strong")
        except MilvusException as error:
            log.warning("no media pHash for %d media: %s", len(shas), error)
            return {}
        found = {}
        for row in rows:
            value = row.get("phash")
            value = value[0] if isinstance(value, list) and value else value  # a binary vector: bytes
            if isinstance(value, bytes | bytearray) and len(value) == 8:
                found[row["sha256"]] = bytes(value).hex()
        return found

    def sightings_of(self, media_sha256: set[str]) -> dict[str, list[Sighting]]:
        """Every sighting (original upload and re-uploads) of each media, oldest first."""
        shas = sorted(media_sha256)
        if not shas:
            return {}
        rows = self.sightings.query(f"canonical_sha256 in {json.dumps(shas)}", limit=MAX_RESULTS,
                                    output_fields=["canonical_sha256", "media_id", "source_url", "page_url",
                                                   "platform", "posted_at", "scraped_at", "match"],
                                    consistency_level="Strong")
        by_media: dict[str, list[Sighting]] = {}
        for row in sorted(rows, key=lambda r: r["scraped_at"]):
            by_media.setdefault(row["canonical_sha256"], []).append(Sighting(
                row["media_id"], row["source_url"], page_url_from_store(row["page_url"]), row["platform"],
                _iso(row["posted_at"]), _iso(row["scraped_at"]), row["match"]))
        return by_media

    def crop_link(self, crop_key: str) -> str:
        """A link to the face crop that expires after ``api.crop_link_ttl_s``."""
        if self._objects is None:
            self._objects = object_client(self.settings)
        return self._objects.presigned_get_object(self.settings.minio.buckets.crops.name, crop_key,
                                                  expires=dt.timedelta(seconds=self.settings.api.crop_link_ttl_s))
