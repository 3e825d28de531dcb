"""The services' Workspace with in-memory stores: the service layer tested without any service.

``MemoryWorkspace`` keeps the real case database (SQLite in a temporary folder) and replaces
what lives in Milvus and MinIO and the face model: enrolled faces and the object store (the
pipeline tests' own, tests/support/memory.py), the face index with its sightings, and an
encoder that "finds" faces by a photo's colour, so a test decides exactly which faces a
photo holds and how similar they are.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mimamori.core.config import Settings
from mimamori.models.detector import Detection
from mimamori.models.face_encoder import EncodedFace
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import open_database
from mimamori.stores.face_search import FaceHit, Sighting, StoredFace
from tests.support.memory import MemoryEnrolledFaces, MemoryMediaHashes, MemoryObjects, MemoryReferenceHashes

DIMENSION = 8


def unit(*values: float) -> np.ndarray:
    """An L2-normalised vector of DIMENSION values (missing ones are 0)."""
    vector = np.zeros(DIMENSION, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


def consent_record(**changes) -> dict:
    """A consent in force for every scope (given yesterday, for 30 days), as a request body holds it."""
    now = dt.datetime.now(dt.UTC)
    record = {"given_by": "client", "given_at": (now - dt.timedelta(days=1)).isoformat(),
              "scope": ["search", "watchlist", "takedown"], "expires_at": (now + dt.timedelta(days=30)).isoformat(),
              "recorded_by": "staff"}
    record.update(changes)
    return record


def photo_of(colour: tuple[int, int, int], size: int = 64) -> bytes:
    """A JPEG of one colour: MemoryEncoder looks its faces up by that colour."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


class MemoryEncoder:
    """Faces by the colour of a photo's centre pixel: ``faces[colour]`` is the list of vectors."""

    version = "memory/v1"

    def __init__(self, faces: dict[tuple[int, int, int], list[np.ndarray]]):
        self.faces = faces

    def encode(self, frame: Image.Image) -> list[EncodedFace]:
        centre = frame.getpixel((frame.width // 2, frame.height // 2))
        colour = min(self.faces, key=lambda c: sum(abs(a - b) for a, b in zip(c, centre, strict=True)),
                     default=None)
        if colour is None or sum(abs(a - b) for a, b in zip(colour, centre, strict=True)) > 30:
            return []
        box, landmarks = np.array([0.0, 0.0, 10.0, 10.0]), np.zeros((5, 2))
        return [EncodedFace(Detection(box, landmarks, 0.99), frame.resize((16, 16)), {"quality": 1.0}, vector)
                for vector in self.faces[colour]]


@dataclass
class IndexedFace:
    face_id: int
    media_sha256: str
    vector: np.ndarray
    platform: str = "web"
    posted_at: dt.datetime | None = None
    sightings: list[Sighting] = field(default_factory=list)
    phash: str | None = None  # the media's pHash (16 hex digits), as the media collection keeps it


class MemoryFaceIndex:
    """The indexed faces and their sightings, searched by cosine similarity (FaceSearch's shape)."""

    def __init__(self, model: str, faces: list[IndexedFace] | None = None):
        self.model = model
        self.faces = list(faces or [])
        self.calls: list[tuple[str, int]] = []  # (method, ids asked for): a test counts the round trips

    def follow_alias(self) -> tuple[str, str]:
        return "memory-faces", self.model

    def _hits(self, vector: np.ndarray) -> list[FaceHit]:
        hits = [FaceHit(f.face_id, float(f.vector @ vector), f.media_sha256, f"https://example.org/{f.face_id}",
                        f.platform, f.posted_at.isoformat() if f.posted_at else None, {}, 1.0, "memory/v1", 0,
                        f"crops/{f.face_id}.jpg") for f in self.faces]
        return sorted(hits, key=lambda h: h.similarity, reverse=True)

    def search(self, vectors: np.ndarray, top_k: int = 10, offset: int = 0, platform: str | None = None,
               posted_from: dt.datetime | None = None, posted_to: dt.datetime | None = None,
               collection: Any = None) -> list[FaceHit]:
        best: dict[int, FaceHit] = {}
        for vector in vectors:
            for hit in self._hits(vector):
                if platform is None or hit.platform == platform:
                    best[hit.face_id] = max(best.get(hit.face_id, hit), hit, key=lambda h: h.similarity)
        ranked = sorted(best.values(), key=lambda h: h.similarity, reverse=True)[offset: offset + top_k]
        for hit in ranked:
            hit.sightings = self.sightings_of({hit.media_sha256})[hit.media_sha256]
        return ranked

    def faces_above(self, vectors: np.ndarray, threshold: float) -> list[list[FaceHit]]:
        return [[hit for hit in self._hits(vector) if hit.similarity >= threshold] for vector in vectors]

    def nearest_with_vectors(self, vector: np.ndarray, top_k: int) -> tuple[list[FaceHit], np.ndarray]:
        self.calls.append(("nearest_with_vectors", top_k))
        hits = self._hits(vector)[:top_k]
        by_id = {f.face_id: f.vector for f in self.faces}
        return hits, np.array([by_id[h.face_id] for h in hits], dtype=np.float32).reshape(len(hits), len(vector))

    def vectors_of(self, face_ids: list[int] | set[int]) -> dict[int, np.ndarray]:
        self.calls.append(("vectors_of", len(set(face_ids))))
        return {f.face_id: f.vector for f in self.faces if f.face_id in set(face_ids)}

    def faces_by_id(self, face_ids: set[int] | list[int], collection: Any = None) -> dict[int, StoredFace]:
        wanted = set(face_ids)
        self.calls.append(("faces_by_id", len(wanted)))
        return {f.face_id: StoredFace(f.face_id, f.media_sha256, f"https://example.org/{f.face_id}", f.platform,
                                      f.posted_at.isoformat() if f.posted_at else None, None,
                                      {"x1": 0.0, "y1": 0.0, "x2": 10.0, "y2": 10.0}, 1.0, "memory/v1", 0,
                                      f"crops/{f.face_id}.jpg")
                for f in self.faces if f.face_id in wanted}

    def media_phashes(self, media_sha256: set[str]) -> dict[str, str]:
        self.calls.append(("media_phashes", len(media_sha256)))
        return {f.media_sha256: f.phash for f in self.faces if f.media_sha256 in media_sha256 and f.phash}

    def sightings_of(self, media_sha256: set[str]) -> dict[str, list[Sighting]]:
        self.calls.append(("sightings_of", len(media_sha256)))
        return {sha: [s for f in self.faces if f.media_sha256 == sha for s in f.sightings] for sha in media_sha256}


class MemoryWorkspace(Workspace):
    """A Workspace on SQLite with the in-memory stores above; ``faces`` decides what photos show."""

    def __init__(self, settings: Settings, database: Path, faces: dict[tuple[int, int, int], list[np.ndarray]],
                 indexed: list[IndexedFace] | None = None):
        super().__init__(settings, open_database(f"sqlite:///{database}"))
        self.encoder = MemoryEncoder(faces)
        self.enrolled = MemoryEnrolledFaces()
        self.index = MemoryFaceIndex(self.model, indexed)
        self.memory_objects = MemoryObjects()
        self.memory_references = MemoryReferenceHashes()
        self.memory_media_hashes = MemoryMediaHashes()

    def encoder_for(self, model: str | None = None) -> MemoryEncoder:  # type: ignore[override]
        return self.encoder

    def enrolled_for(self, model: str | None = None) -> MemoryEnrolledFaces:  # type: ignore[override]
        return self.enrolled

    def enrolled_models(self) -> list[str]:
        return [self.model]

    @property
    def reference_hashes(self) -> MemoryReferenceHashes:  # type: ignore[override]
        return self.memory_references

    @property
    def media_hashes(self) -> MemoryMediaHashes:  # type: ignore[override]
        return self.memory_media_hashes

    def searcher_for(self, model: str) -> MemoryFaceIndex:  # type: ignore[override]
        return self.index

    @property
    def searcher(self) -> MemoryFaceIndex:  # type: ignore[override]
        return self.index

    @property
    def objects(self) -> MemoryObjects:  # type: ignore[override]
        return self.memory_objects
