"""Write what the pipeline found: crops, faces, media, sightings, events. Idempotently.

Order per batch: crops (MinIO) -> faces (Milvus) -> watchlist matches (case database) ->
media rows -> sightings -> the ``faces.indexed`` events. A media row means "fully indexed",
so it is written only after its faces and matches; if the process dies in between, the
replay finds no media row and redoes the item, and every write lands on the same key again:

* face id = hash(media sha256, frame time, face index, model version);
* crop key = ``<model>/<sha256[:2]>/<sha256>/<frame ms>-<face index>.jpg``, addressed by content;
* media key = hash(sha256); sighting key = hash(media id, source URL, sha256).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import numpy as np
from PIL import Image
from pymilvus import Collection

from mimamori.core import metrics
from mimamori.core.config import Settings
from mimamori.core.retry import watching, with_retries
from mimamori.models.embedders import embedder_version
from mimamori.services.watchlist import IndexedFace
from mimamori.stores.image_hashes import pdq_row
from mimamori.stores.media import int64_key, stored_page_url
from mimamori.stores.writer import MilvusWriter
from mimamori.streams.events import DeadLetter, epoch_seconds, face_indexed_json
from mimamori.transforms.backends import PRODUCTION, Backends
from mimamori.transforms.elements import Face, MediaItem, hashed_media
from mimamori.transforms.totals import count_faces, count_media

log = logging.getLogger(__name__)


def face_id(media_sha256: str, frame_ms: int, face_index: int, model_version: str) -> int:
    return int64_key(media_sha256, str(frame_ms), str(face_index), model_version)


def crop_key(model_name: str, media_sha256: str, frame_ms: int, face_index: int) -> str:
    return f"{model_name}/{media_sha256[:2]}/{media_sha256}/{frame_ms}-{face_index}.jpg"


def sighting_row(item: MediaItem, canonical_sha256: str, match: str) -> dict[str, Any]:
    event = item.event
    return {
        "sighting_key": int64_key(event.media_id, event.source_url, item.media.sha256),
        "phash": item.phash,
        "media_sha256": item.media.sha256,
        "canonical_sha256": canonical_sha256,
        "match": match,
        "media_id": event.media_id,
        "source_url": event.source_url,
        "page_url": stored_page_url(event.page_url),
        "platform": event.platform,
        "posted_at": event.posted_at_epoch,
        "scraped_at": epoch_seconds(event.scraped_at),
    }


def face_row(item: MediaItem, face: Face, vector: np.ndarray, crop: str, model_version: str,
             now: datetime) -> dict[str, Any]:
    """The Milvus row of one face, keyed by content: a replay upserts the same row."""
    return {
        "face_id": face_id(item.media.sha256, face.frame_ms, face.face_index, model_version),
        "embedding": vector.tolist(),
        "media_sha256": item.media.sha256,
        "frame_ms": face.frame_ms,
        "face_index": face.face_index,
        "source_url": item.event.source_url,
        "platform": item.event.platform,
        "posted_at": item.event.posted_at_epoch,
        "indexed_at": int(now.timestamp()),
        # Milvus 2.3 JSON fields hold objects, not arrays.
        "box": dict(zip(("x1", "y1", "x2", "y2"), (round(float(v), 1) for v in face.detection.box), strict=True)),
        "det_score": face.detection.score,
        "quality": float(face.quality.get("quality", 0.0)),
        "model_version": model_version,
        "crop_key": crop,
    }


def media_row(item: MediaItem, model_version: str, now: datetime) -> dict[str, Any]:
    """The media row that marks the content as fully indexed (written after its faces)."""
    return {
        "media_key": int64_key(item.media.sha256),
        "phash": item.phash,
        "sha256": item.media.sha256,
        "kind": item.media.kind,
        "width": item.media.width,
        "height": item.media.height,
        "face_count": len(item.faces),
        "rotation": item.media.orientation.rotation,
        "mirrored": item.media.orientation.mirrored,
        "first_media_id": item.event.media_id,
        "model_version": model_version,
        "indexed_at": int(now.timestamp()),
    }


def indexed_face(row: dict[str, Any], item: MediaItem, vector: np.ndarray) -> IndexedFace:
    """What the watchlist compares with the enrolled faces."""
    return IndexedFace(row["face_id"], item.media.sha256, vector, item.event.media_id, item.event.source_url,
                       item.event.platform, datetime.fromisoformat(item.event.scraped_at),
                       item.phash.hex() if item.phash else None)


def frame_thumbnail(image: Image.Image, max_side: int = 256) -> bytes:
    """A frame scaled to ``max_side`` as a JPEG without metadata: the image of a hash-only match
    (services/review_images.py blurs it for the reviewer, as it does face crops)."""
    small = image.copy()
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def face_indexed_document(row: dict[str, Any], item: MediaItem, collection: str, stamp: str) -> dict[str, Any]:
    """The ``faces.indexed`` event of a face row."""
    document = {k: row[k] for k in ("face_id", "media_sha256", "frame_ms", "face_index", "model_version",
                                    "det_score", "quality", "crop_key", "source_url", "platform")}
    document.update(media_id=item.event.media_id, collection=collection, indexed_at=stamp,
                    box=list(row["box"].values()))
    return document


class _BatchingWriter(beam.DoFn):
    """Buffers items and writes them in batches; whatever is left is written at bundle end."""

    def __init__(self, settings: Settings, backends: Backends = PRODUCTION, max_rows: int = 256):
        self.settings = settings
        self.backends = backends
        self.max_rows = max_rows

    def setup(self) -> None:
        self.writers: dict[str, MilvusWriter] = {}

    def start_bundle(self) -> None:
        self.buffer: list[MediaItem] = []
        self.rows = 0

    def process(self, item: MediaItem) -> Iterator[Any]:
        self.buffer.append(item)
        self.rows += max(1, len(item.faces))
        if self.rows >= self.max_rows:
            self._flush()
        return iter(())

    def finish_bundle(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if self.buffer:
            with metrics.stage_timer("write"):
                self.write(self.buffer)
            metrics.BATCH_SIZE.labels(stage=type(self).__name__).observe(len(self.buffer))
            metrics.STAGE_ELEMENTS.labels(stage="write").inc(len(self.buffer))
        self.buffer, self.rows = [], 0

    def write(self, items: list[MediaItem]) -> None:
        raise NotImplementedError

    def write_through(self, *collections: Collection) -> None:
        """One writer per collection this DoFn writes, made at setup (its error series starts at 0)."""
        bound = self.settings.milvus.max_unindexed_rows
        self.writers.update({c.name: self.backends.milvus_writer(c, bound) for c in collections})

    def upsert(self, collection: Collection, rows: list[dict[str, Any]]) -> None:
        """Write rows and wait until Milvus has them: what is written next depends on them."""
        if rows:
            writer = self.writers[collection.name]
            # The writer's index check retries a lost Milvus inside pymilvus, silently: watched.
            with watching("milvus", f"write of {len(rows)} rows to {collection.name}"):
                writer.write(rows)
                writer.wait()

    def teardown(self) -> None:
        # Flushed once, at shutdown: segments seal on their own while the pipeline runs.
        writers, self.writers = self.writers, {}
        for writer in writers.values():
            try:
                with watching("milvus", f"the final flush of {writer.collection.name}"):
                    writer.close(flush=True)
            except Exception as error:  # every write was acknowledged already; only the early seal is lost
                log.warning("flushing %s at teardown failed (its segments seal on their own): %s",
                            writer.collection.name, error)


class WriteIndexedMedia(_BatchingWriter):
    """New media: its face crops, vectors, media row, sighting and faces.indexed events."""

    def setup(self) -> None:
        super().setup()
        self.model = self.settings.models.embedder.name
        self.model_version = embedder_version(self.settings.models.embedder)
        self.faces = self.backends.face_collection(self.settings)
        self.media, self.sightings = self.backends.media_collections(self.settings)
        self.objects = self.backends.objects(self.settings)
        self.crops_bucket = self.settings.minio.buckets.crops.name
        self.producer = self.backends.producer(self.settings.kafka)
        self.watchlist = self.backends.watchlist(self.settings, self.model_version)
        self.pdq = self.backends.pdq_collection(self.settings)
        self.write_through(self.faces, self.media, self.sightings, self.pdq)

    def write(self, items: list[MediaItem]) -> None:
        now = datetime.now(UTC)
        face_rows, events, indexed = [], [], []
        for item in items:
            for face, vector in zip(item.faces, item.embeddings if item.embeddings is not None else [], strict=True):
                row = face_row(item, face, vector, self._put_crop(item, face), self.model_version, now)
                face_rows.append(row)
                events.append((row, item))
                indexed.append(indexed_face(row, item, vector))
        if self.settings.pipeline.reprocess_indexed:
            self._drop_faces_not_found_again(items, face_rows)
        self.upsert(self.faces, face_rows)
        # After the faces are written (a reviewer opening a match finds its face) and before the
        # media row: a crash in between redoes the item, and its matches; one after the media row
        # would make the item a sighting on replay, never checked again (a lost match).
        # The watched cases are read once for both checks of the batch.
        watched = with_retries(self.watchlist.watched_cases, "watchlist cases", operation="watchlist_check")
        with_retries(lambda: self.watchlist.check(indexed, watched), "watchlist check", operation="watchlist_check")
        # The frames' PDQ and their matches (issue 20): before the media row too, for the same reason.
        self.upsert(self.pdq, [pdq_row(item.media.sha256, ms, hashed, int(now.timestamp()))
                               for item in items for ms, hashed in item.pdq])
        self._match_hashes(items, watched)
        self.upsert(self.media, [media_row(item, self.model_version, now) for item in items])
        self.upsert(self.sightings, [sighting_row(item, item.media.sha256, "original") for item in items])
        self._announce(events, now)
        for item in items:
            count_media("indexed" if item.faces else "no_face")
        count_faces(self.model, len(face_rows))

    def _match_hashes(self, items: list[MediaItem], watched: dict[str, float]) -> None:
        """Image-hash matches (issue 20): the frames the decision matched get their thumbnail first,
        so a reviewer opening such a match (it has no face crop) finds its image."""
        hashed = [hashed_media(item) for item in items if item.pdq]
        candidates = with_retries(lambda: self.watchlist.hash_candidates(hashed, watched), "watchlist hash check")
        frames = {(item.media.sha256, frame.time_ms): frame.image for item in items for frame in item.media.frames}
        for key in sorted({(c.media_sha256, c.frame_ms, c.image_key) for c in candidates}):
            data = frame_thumbnail(frames[key[:2]])
            with_retries(lambda key=key, data=data: self.objects.put_object(
                self.crops_bucket, key[2], io.BytesIO(data), len(data), content_type="image/jpeg"),
                f"put thumbnail {key[2]}")
        with_retries(lambda: self.watchlist.record_hash_matches(candidates, hashed), "watchlist hash matches")

    def _put_crop(self, item: MediaItem, face: Face) -> str:
        """The aligned face as a JPEG under its content-addressed key; return the key."""
        key = crop_key(self.model, item.media.sha256, face.frame_ms, face.face_index)
        jpeg = io.BytesIO()
        face.aligned.save(jpeg, "JPEG", quality=90)
        size = jpeg.tell()
        jpeg.seek(0)
        with_retries(lambda: self.objects.put_object(self.crops_bucket, key, jpeg, size, content_type="image/jpeg"),
                     f"put crop {key}", store="minio", operation="put_crop")
        return key

    def _announce(self, events: list[tuple[dict[str, Any], MediaItem]], now: datetime) -> None:
        """One ``faces.indexed`` event per face written, keyed by face id; flushed before returning."""
        topic = self.settings.kafka.topics.faces_indexed.name
        stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for row, item in events:
            document = face_indexed_document(row, item, self.faces.name, stamp)
            value = face_indexed_json(document)
            # A send blocks for metadata (up to a minute) while the broker is away, then raises: retried.
            with_retries(lambda row=row, value=value: self.producer.send(topic, key=str(row["face_id"]).encode(),
                                                                           value=value),
                         "send of a faces.indexed event", store="kafka", operation="produce")
        with_retries(lambda: self.producer.flush(timeout=30), "flush faces.indexed", store="kafka", operation="produce")

    def _drop_faces_not_found_again(self, items: list[MediaItem], face_rows: list[dict[str, Any]]) -> None:
        """Faces of reprocessed media that this run no longer finds (a fixed false positive): deleted.

        Their crops go too, unless a face found now has the same crop key.
        """
        shas = sorted({item.media.sha256 for item in items})
        found_now = {row["face_id"] for row in face_rows}
        crops_now = {row["crop_key"] for row in face_rows}
        stored = with_retries(lambda: self.faces.query(
            f"media_sha256 in {json.dumps(shas)}", output_fields=["face_id", "crop_key"], limit=16384,
            consistency_level="Strong"), "query faces of reprocessed media", store="milvus", operation="query")
        stale = [row for row in stored if row["face_id"] not in found_now]
        if not stale:
            return
        with_retries(lambda: self.faces.delete(f"face_id in {[int(row['face_id']) for row in stale]}"),
                     "delete faces not found again", store="milvus", operation="delete")
        for key in {row["crop_key"] for row in stale} - crops_now:
            with_retries(lambda key=key: self.objects.remove_object(self.crops_bucket, key), f"remove crop {key}",
                         store="minio", operation="remove_crop")
        metrics.FACES_REMOVED.inc(len(stale))
        log.info("reprocessing removed %d face(s) no longer found in %d media", len(stale), len(shas))


class WriteSightings(_BatchingWriter):
    """Media already indexed: only where it was seen, linked to the indexed copy."""

    def setup(self) -> None:
        super().setup()
        _media, self.sightings = self.backends.media_collections(self.settings)
        self.write_through(self.sightings)
        self.watchlist = self.backends.watchlist(self.settings, embedder_version(self.settings.models.embedder))

    def write(self, items: list[MediaItem]) -> None:
        known = [item for item in items if item.known]
        self.upsert(self.sightings, [sighting_row(item, item.known.sha256, item.known.match) for item in known])
        with_retries(lambda: self.watchlist.link_sightings(
            [(item.known.sha256, item.event.media_id, item.event.source_url, item.event.platform,
              datetime.fromisoformat(item.event.scraped_at)) for item in known]), "watchlist sightings",
            operation="watchlist_sightings")
        for item in items:
            count_media(f"sighting_{item.known.match if item.known else 'unknown'}")


class WriteDeadLetters(beam.DoFn):
    """Dead letters to the ``media.dlq`` topic, keyed by media id; flushed before the bundle ends."""

    def __init__(self, settings: Settings, backends: Backends = PRODUCTION):
        self.settings = settings
        self.backends = backends

    def setup(self) -> None:
        self.producer = self.backends.producer(self.settings.kafka)
        self.topic = self.settings.kafka.topics.media_dlq.name

    def process(self, letter: DeadLetter) -> Iterator[Any]:
        key = letter.media_id.encode() if letter.media_id else None
        with_retries(lambda: self.producer.send(self.topic, key=key, value=letter.to_json()),
                     "send of a dead letter", store="kafka", operation="produce")
        return iter(())

    def finish_bundle(self) -> None:
        with_retries(lambda: self.producer.flush(timeout=30), "flush media.dlq", store="kafka", operation="produce")
