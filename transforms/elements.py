"""What flows between the pipeline's stages, per media item.

All stages from the Kafka source to the writers are fused into one Beam stage, so these
objects pass between transforms in memory and are never serialised.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import apache_beam as beam
import numpy as np
from PIL import Image

from mimamori.media.decode import DecodedMedia
from mimamori.media.pdq import PdqHash
from mimamori.models.detector import Detection
from mimamori.services.image_matches import HashedMedia, LocalScores
from mimamori.stores.media import KnownMedia
from mimamori.streams.events import KafkaRecord, MediaEvent


@dataclass
class Face:
    frame_ms: int
    face_index: int  # position within its media, over all frames
    detection: Detection
    aligned: Image.Image | None = None
    quality: dict[str, float] = field(default_factory=dict)


@dataclass
class MediaItem:
    record: KafkaRecord
    event: MediaEvent
    media: DecodedMedia
    phash: bytes
    known: KnownMedia | None = None
    faces: list[Face] = field(default_factory=list)
    embeddings: np.ndarray | None = None  # one row per face, after the embedder
    pdq: list[tuple[int, PdqHash]] = field(default_factory=list)  # (frame ms, PDQ) of every frame (issue 20)
    local_scores: LocalScores | None = None  # an image's crop-robust scores, computed ahead of the writer

    @property
    def key(self) -> str:
        return f"{self.media.sha256}:{self.event.media_id}"


def hashed_media(item: MediaItem) -> HashedMedia:
    """What the image-hash watchlist compares with the cases' reference hashes and images (an image's
    picture for its local features; a video's frames are matched by PDQ alone)."""
    images = tuple((frame.time_ms, frame.image) for frame in item.media.frames) if item.media.kind == "image" else ()
    return HashedMedia(item.media.sha256, list(item.pdq), item.event.media_id, item.event.source_url,
                       item.event.platform, datetime.fromisoformat(item.event.scraped_at),
                       item.phash.hex() if item.phash else None, images, item.local_scores)


@dataclass(frozen=True)
class Incoming:
    """A parsed event with the record it came in, before its bytes are fetched."""

    record: KafkaRecord
    event: MediaEvent


class InMemoryCoder(beam.coders.Coder):
    """The coder of objects that live inside one fused stage (media items with their frames).

    Beam samples the size of elements for its metrics by encoding them; pickling every frame
    of an image just to measure it costs more than decoding the image did. This coder
    estimates from the pixel count instead, and still pickles if an item ever has to cross
    a stage boundary.
    """

    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> Any:
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, value: Any) -> int:
        media = getattr(value, "media", None)
        if media is None:
            return 1024
        return 1024 + sum(frame.image.width * frame.image.height * 3 for frame in media.frames)

    def _create_impl(self):
        from apache_beam.coders import coder_impl

        return coder_impl.CallbackCoderImpl(self.encode, self.decode, self.estimate_size)

    def to_type_hint(self):
        return Any


beam.coders.registry.register_coder(MediaItem, InMemoryCoder)
beam.coders.registry.register_coder(Incoming, InMemoryCoder)
