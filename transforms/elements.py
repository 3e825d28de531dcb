"""What flows between the pipeline's stages, per media item.

All stages from the Kafka source to the writers are fused into one Beam stage, so these
objects pass between transforms in memory and are never serialised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from models.detector import Detection
from stores.media import KnownMedia
from streams.events import KafkaRecord, MediaEvent
from transforms.media import DecodedMedia


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

    @property
    def key(self) -> str:
        return f"{self.media.sha256}:{self.event.media_id}"


@dataclass(frozen=True)
class Incoming:
    """A parsed event with the record it came in, before its bytes are fetched."""

    record: KafkaRecord
    event: MediaEvent
