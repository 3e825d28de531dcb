"""In-memory stand-ins for the services the pipeline and the watchlist talk to.

``MemoryStores`` holds an object store, Milvus-like collections (with the real schemas), a
Kafka-like producer, enrolled faces and a SQLite case database, and hands them to
``build_pipeline`` as ``Backends`` (transforms/backends.py). The production code above them
runs unchanged: ``MediaIndex.find``, ``MilvusWriter``, the writers' row building, the
``Watchlist``. Beam pickles every DoFn with its backends; a ``MemoryStores`` pickles as its
name, so the unpickled DoFns of a ``TestPipeline`` (DirectRunner, in this process) find the
same stores again.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
from minio.error import S3Error
from pymilvus import CollectionSchema
from sqlalchemy.orm import sessionmaker

from mimamori.core.config import KafkaConfig, Settings
from mimamori.media.pdq import PdqHash, hamming
from mimamori.models.registry import embedder_spec
from mimamori.services.image_matches import MediaWatchlist
from mimamori.stores import faces as face_store
from mimamori.stores import image_hashes
from mimamori.stores import media as media_store
from mimamori.stores.cases import close_database, open_database
from mimamori.stores.enrolled import EnrolledHit, enrolled_key
from mimamori.stores.image_hashes import MediaHashHit, ReferenceHash, ReferenceHit, reference_key
from mimamori.stores.media import MediaIndex
from mimamori.stores.writer import MilvusWriter
from mimamori.transforms.backends import Backends

# field == "text" | field == 12 | field in [...]: the expressions the code under test sends.
_EXPRESSION = re.compile(r"^\s*(\w+)\s*(==|in)\s*(.+?)\s*$")


def _matcher(expression: str) -> Callable[[dict[str, Any]], bool]:
    if not expression.strip():
        return lambda row: True
    parsed = _EXPRESSION.match(expression)
    if parsed is None:
        raise NotImplementedError(f"the in-memory collection cannot evaluate {expression!r}")
    name, operator, literal = parsed.groups()
    value = json.loads(literal)
    if operator == "==":
        return lambda row: row.get(name) == value
    values = set(value)
    return lambda row: row.get(name) in values


def _hamming(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


@dataclass(frozen=True)
class Hit:
    """What pymilvus's search hits offer the code under test."""

    id: int
    distance: float
    entity: dict[str, Any]


class MemoryCollection:
    """A Milvus collection's upsert, query, search (HAMMING or IP) and delete, over a dict of rows."""

    def __init__(self, name: str, schema: CollectionSchema):
        self.name, self.schema = name, schema
        self.primary = schema.primary_field.name
        self.indexes: list = []  # no vector index: the writer's index gate never waits
        self.rows: dict[Any, dict[str, Any]] = {}
        self.upserts = 0  # rows sent, counting repeats: rows written twice land on one key
        self._lock = threading.Lock()

    def upsert(self, rows: Iterable[dict[str, Any]], **_options: Any) -> None:
        with self._lock:
            for row in rows:
                self.rows[row[self.primary]] = dict(row)
                self.upserts += 1

    def query(self, expr: str, output_fields: Sequence[str] | None = None, limit: int = 16384,
              **_options: Any) -> list[dict[str, Any]]:
        keep = {self.primary, *(output_fields or ())}
        with self._lock:
            found = [row for row in self.rows.values() if _matcher(expr)(row)][:limit]
        return [{k: v for k, v in row.items() if k in keep} for row in found]

    def search(self, data: Sequence[Any], anns_field: str, param: dict[str, Any], limit: int,
               output_fields: Sequence[str] | None = None, **_options: Any) -> list[list[Hit]]:
        metric = param["metric_type"]
        with self._lock:
            rows = list(self.rows.values())
        results = []
        for query in data:
            if metric == "HAMMING":
                scored = sorted(((_hamming(query, row[anns_field]), row) for row in rows), key=lambda s: s[0])
            else:  # IP: the larger the closer
                scored = sorted(((float(np.dot(query, row[anns_field])), row) for row in rows), key=lambda s: -s[0])
            results.append([Hit(row[self.primary], distance, {f: row[f] for f in output_fields or ()})
                             for distance, row in scored[:limit]])
        return results

    def delete(self, expr: str, **_options: Any) -> None:
        with self._lock:
            for key in [key for key, row in self.rows.items() if _matcher(expr)(row)]:
                del self.rows[key]

    def flush(self, **_options: Any) -> None:
        """Nothing to seal in memory."""


class MemoryWriter(MilvusWriter):
    """The real writer (batching, the empty-text check), without the index gate and the final flush."""

    def __init__(self, collection: MemoryCollection):
        super().__init__(collection, max_unindexed_rows=None)

    def close(self, flush: bool = True) -> None:
        super().close(flush=False)  # the flush asks the Milvus server whether the collection exists


class _Response:
    """What ``Minio.get_object`` returns, as far as the decoder reads it."""

    def __init__(self, data: bytes):
        self._data = data

    def read(self) -> bytes:
        return self._data

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class MemoryObjects:
    """A bucket/key -> bytes map with the Minio calls the pipeline makes."""

    def __init__(self):
        self.objects: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    def _get(self, bucket: str, key: str) -> bytes:
        with self._lock:
            if (bucket, key) not in self.objects:
                raise S3Error(None, "NoSuchKey", "The specified key does not exist.", key, "memory", "memory",
                              bucket, key)
            return self.objects[bucket, key]

    def stat_object(self, bucket: str, key: str) -> SimpleNamespace:
        return SimpleNamespace(size=len(self._get(bucket, key)))

    def get_object(self, bucket: str, key: str) -> _Response:
        return _Response(self._get(bucket, key))

    def put(self, bucket: str, key: str, data: bytes) -> None:
        with self._lock:
            self.objects[bucket, key] = data

    def put_object(self, bucket: str, key: str, data: io.IOBase, length: int, **_options: Any) -> None:
        self.put(bucket, key, data.read(length))

    def list_objects(self, bucket: str, prefix: str = "", recursive: bool = False) -> list[SimpleNamespace]:
        """Every object under ``prefix`` (always recursively), as ``Minio.list_objects`` names them."""
        return [SimpleNamespace(object_name=key) for key in self.keys(bucket) if key.startswith(prefix)]

    def remove_object(self, bucket: str, key: str) -> None:
        with self._lock:
            self.objects.pop((bucket, key), None)

    def keys(self, bucket: str) -> list[str]:
        with self._lock:
            return sorted(key for b, key in self.objects if b == bucket)


@dataclass(frozen=True)
class Message:
    key: bytes | None
    value: bytes


class MemoryProducer:
    """A KafkaProducer's ``send`` and ``flush``: every message kept, per topic, in order."""

    def __init__(self):
        self.topics: dict[str, list[Message]] = {}
        self.flushes = 0
        self._lock = threading.Lock()

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"", **_options: Any) -> None:
        with self._lock:
            self.topics.setdefault(topic, []).append(Message(key, value))

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1

    def messages(self, topic: str) -> list[Message]:
        with self._lock:
            return list(self.topics.get(topic, []))

    def documents(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(message.value) for message in self.messages(topic)]


@dataclass
class MemoryEnrolledFaces:
    """Enrolled reference faces by case: ``stores.enrolled.EnrolledFaces``'s calls, exact IP search."""

    faces: dict[int, tuple[str, str, np.ndarray]] = field(default_factory=dict)
    written_by: list[dt.datetime | None] = field(default_factory=list)  # what each search was asked to see

    def add(self, case_id: str, photo_sha256: str, model_version: str, vector: np.ndarray) -> int:
        key = enrolled_key(case_id, photo_sha256, model_version)
        self.faces[key] = (case_id, photo_sha256, np.asarray(vector, dtype=np.float32))
        return key

    def nearest(self, vectors: np.ndarray, top_k: int, case_ids: list[str],
                written_by: dt.datetime | None = None) -> list[list[EnrolledHit]]:
        self.written_by.append(written_by)
        watched = [(case, sha, vector) for case, sha, vector in self.faces.values() if case in case_ids]
        return [sorted((EnrolledHit(case, sha, float(np.dot(query, vector))) for case, sha, vector in watched),
                       key=lambda hit: -hit.similarity)[:top_k] for query in np.asarray(vectors, dtype=np.float32)]

    def vectors(self, case_id: str) -> np.ndarray:
        return np.array([v for case, _sha, v in self.faces.values() if case == case_id], dtype=np.float32)

    def count(self, case_id: str) -> int:
        return sum(1 for case, _sha, _v in self.faces.values() if case == case_id)

    def delete_case(self, case_id: str) -> None:
        self.faces = {k: face for k, face in self.faces.items() if face[0] != case_id}


class MemoryReferenceHashes:
    """The cases' reference PDQ hashes: ``stores.image_hashes.ReferenceHashes``'s calls, exact Hamming search."""

    def __init__(self):
        self.rows: dict[int, ReferenceHash] = {}
        self.written_by: list[dt.datetime | None] = []  # what each search was asked to see

    def add(self, hashes: list[ReferenceHash]) -> int:
        for item in hashes:
            self.rows[reference_key(item.case_id, item.reference_sha256, item.frame_ms, item.variant)] = item
        return len(hashes)

    def nearest(self, hashes: list[bytes], case_ids: list[str], max_distance: int,
                top_k: int, written_by: dt.datetime | None = None) -> list[list[ReferenceHit]]:
        self.written_by.append(written_by)
        watched = [r for r in self.rows.values() if r.case_id in case_ids]
        found = []
        for query in hashes:
            hits = sorted((ReferenceHit(r, hamming(query, r.hash.bits)) for r in watched), key=lambda h: h.distance)
            found.append([hit for hit in hits[:top_k] if hit.distance <= max_distance])
        return found

    def of_case(self, case_id: str) -> list[ReferenceHash]:
        return sorted((r for r in self.rows.values() if r.case_id == case_id),
                      key=lambda r: (r.reference_sha256, r.frame_ms, r.variant))

    def count(self, case_id: str) -> int:
        return len(self.of_case(case_id))

    def delete_reference(self, case_id: str, reference_sha256: str) -> None:
        self.rows = {k: r for k, r in self.rows.items()
                     if (r.case_id, r.reference_sha256) != (case_id, reference_sha256)}

    def delete_case(self, case_id: str) -> None:
        self.rows = {k: r for k, r in self.rows.items() if r.case_id != case_id}


class MemoryMediaHashes:
    """The scraped frames' PDQ hashes: ``stores.image_hashes.MediaHashes.within``, exact Hamming search."""

    def __init__(self):
        self.frames: dict[tuple[str, int], PdqHash] = {}

    def add(self, media_sha256: str, frame_ms: int, hashed: PdqHash) -> None:
        self.frames[(media_sha256, frame_ms)] = hashed

    def within(self, hashes: list[bytes], max_distance: int, top_k: int = 16384) -> list[list[MediaHashHit]]:
        found = []
        for query in hashes:
            hits = sorted((MediaHashHit(sha, ms, h.quality, hamming(query, h.bits))
                           for (sha, ms), h in self.frames.items()), key=lambda hit: hit.distance)
            found.append([hit for hit in hits[:top_k] if hit.distance <= max_distance])
        return found


_STORES: dict[str, MemoryStores] = {}


def _stores_named(name: str) -> MemoryStores:
    return _STORES[name]


class MemoryStores:
    """Every store the pipeline writes to, in memory; ``backends()`` is what ``build_pipeline`` takes.

    The collections have the production names and schemas (``stores.media.media_schema`` and
    ``sightings_schema``, ``stores.faces.face_schema``).
    """
    def __init__(self, settings: Settings):
        self.name = uuid.uuid4().hex
        self.settings = settings
        self.objects = MemoryObjects()
        self.producer = MemoryProducer()
        self.enrolled = MemoryEnrolledFaces()
        self.references = MemoryReferenceHashes()
        self.database_url = settings.database_url()
        self.metrics_endpoints: list[tuple[int, str, Any]] = []
        self.collections: dict[str, MemoryCollection] = {}
        model = settings.models.embedder.name
        self.media = self._collection(media_store.media_collection_name(settings), media_store.media_schema())
        self.sightings = self._collection(media_store.sightings_collection_name(settings),
                                          media_store.sightings_schema())
        self.faces = self._collection(settings.face_collection(model),
                                      face_store.face_schema(embedder_spec(model).dimension, model))
        self.pdq = self._collection(settings.matching.pdq_collection, image_hashes.pdq_schema())
        _STORES[self.name] = self

    @functools.cached_property
    def sessions(self) -> sessionmaker:
        """The case database (SQLite at the settings' URL), migrated when first asked for."""
        return open_database(self.database_url)

    def __reduce__(self) -> tuple[Callable[[str], MemoryStores], tuple[str]]:
        return _stores_named, (self.name,)

    def close(self) -> None:
        _STORES.pop(self.name, None)
        if "sessions" in self.__dict__:
            close_database(self.database_url)

    def _collection(self, name: str, schema: CollectionSchema) -> MemoryCollection:
        return self.collections.setdefault(name, MemoryCollection(name, schema))

    # The factories of transforms/backends.py, over these stores.
    def object_client(self, _settings: Settings) -> MemoryObjects:
        return self.objects

    def media_collections(self, _settings: Settings) -> tuple[MemoryCollection, MemoryCollection]:
        return self.media, self.sightings

    def face_collection(self, _settings: Settings) -> MemoryCollection:
        return self.faces

    def media_index(self, settings: Settings) -> MediaIndex:
        """The real dedupe lookup (``MediaIndex.find``) over the in-memory media collections."""
        return MediaIndex(self.media, self.sightings, settings.pipeline.near_duplicate_distance)

    def milvus_writer(self, collection: MemoryCollection, _max_unindexed_rows: int | None) -> MemoryWriter:
        return MemoryWriter(collection)

    def kafka_producer(self, _config: KafkaConfig) -> MemoryProducer:
        return self.producer

    def pdq_collection(self, _settings: Settings) -> MemoryCollection:
        return self.pdq

    def watchlist(self, settings: Settings, model_version: str) -> MediaWatchlist:
        return MediaWatchlist(settings, model_version, sessions=self.sessions, enrolled=self.enrolled,
                              producer=self.producer, references=self.references, objects=self.objects)

    def metrics_endpoint(self, port: int, address: str, targets_dir: Any) -> None:
        self.metrics_endpoints.append((port, address, targets_dir))

    def backends(self) -> Backends:
        return Backends(objects=self.object_client, media_collections=self.media_collections,
                        face_collection=self.face_collection, media_index=self.media_index,
                        milvus_writer=self.milvus_writer, producer=self.kafka_producer, watchlist=self.watchlist,
                        pdq_collection=self.pdq_collection,
                        metrics_endpoint=self.metrics_endpoint)
