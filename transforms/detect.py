"""Find the faces in every frame of a media item (MTCNN, or YuNet where the model says so)."""

from __future__ import annotations

from collections.abc import Iterator

from mimamori.core import metrics
from mimamori.core.config import Settings
from mimamori.models.detector import FaceDetector
from mimamori.models.devices import limit_torch_threads, pick_device
from mimamori.models.registry import embedder_spec
from mimamori.transforms.elements import Face, MediaItem
from mimamori.transforms.stage import Stage


class DetectFaces(Stage):
    stage = "detect"

    def __init__(self, settings: Settings):
        self.settings = settings

    def setup(self) -> None:
        device = pick_device(self.settings.models.device)
        limit_torch_threads(device)
        self.detector = FaceDetector(self.settings.models.detector, device,
                                     detector=embedder_spec(self.settings.models.embedder.name).detector)

    def handle(self, item: MediaItem) -> Iterator[MediaItem]:
        frames = item.media.frames
        detections = self.detector.detect([frame.image for frame in frames])
        cap = self.settings.models.detector.max_faces_per_image
        faces: list[Face] = []
        for frame, found in zip(frames, detections, strict=True):
            for detection in found:
                faces.append(Face(frame.time_ms, len(faces), detection))
        if len(faces) > cap:
            metrics.FACES_DROPPED.inc(len(faces) - cap)
            faces = sorted(faces, key=lambda f: f.detection.score, reverse=True)[:cap]
        item.faces = faces
        metrics.FACES_PER_MEDIA.observe(len(faces))
        yield item
