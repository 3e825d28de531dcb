"""Warp each detected face to the embedder's input crop, and score its quality."""

from __future__ import annotations

from collections.abc import Iterator

from mimamori.core.config import Settings
from mimamori.models.alignment import align_face, face_quality
from mimamori.models.registry import embedder_spec
from mimamori.transforms.elements import MediaItem
from mimamori.transforms.stage import Stage


class AlignFaces(Stage):
    stage = "align"

    def __init__(self, settings: Settings):
        self.spec = embedder_spec(settings.models.embedder.name)

    def handle(self, item: MediaItem) -> Iterator[MediaItem]:
        frames = {frame.time_ms: frame.image for frame in item.media.frames}
        for face in item.faces:
            face.aligned = align_face(frames[face.frame_ms], face.detection.landmarks, self.spec)
            face.quality = face_quality(face.aligned, face.detection.box, face.detection.landmarks)
        yield item
