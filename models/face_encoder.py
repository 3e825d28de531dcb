"""Detect, align and embed the faces of one image outside Beam, with the pipeline's own code.

The pipeline runs these steps as separate Beam stages (transforms/detect, align, embed);
enrolment and the benchmarks need the same steps on single images. Both go through the
same functions (FaceDetector.detect, align_face, face_quality, embed_chips), so a face
enrolled here and the same face indexed by the pipeline get the same vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from mimamori.core.config import EmbedderConfig, Settings
from mimamori.models.alignment import align_face, face_quality
from mimamori.models.detector import Detection, FaceDetector
from mimamori.models.devices import limit_torch_threads, pick_device
from mimamori.models.embedders import embed_chips, load_embedder, prepare_for_device


@dataclass
class EncodedFace:
    detection: Detection
    aligned: Image.Image
    quality: dict[str, float]
    vector: np.ndarray  # L2-normalised


class FaceEncoder:
    def __init__(self, settings: Settings, embedder: EmbedderConfig | None = None):
        self.device = pick_device(settings.models.device)
        limit_torch_threads(self.device)
        loaded = load_embedder(embedder or settings.models.embedder)
        self.spec, self.version = loaded.spec, loaded.version
        self.detector = FaceDetector(settings.models.detector, self.device, detector=self.spec.detector)
        self.module = prepare_for_device(loaded.module, self.device)

    def detect(self, frame: Image.Image) -> list[Detection]:
        return self.detector.detect([frame])[0]

    def align(self, frame: Image.Image, detections: list[Detection]) -> list[tuple[Image.Image, dict[str, float]]]:
        aligned = [align_face(frame, d.landmarks, self.spec) for d in detections]
        return [(crop, face_quality(crop, d.box, d.landmarks)) for crop, d in zip(aligned, detections, strict=True)]

    def embed(self, crops: list[Image.Image]) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.spec.dimension), dtype=np.float32)
        chips = torch.from_numpy(np.stack([np.asarray(c, dtype=np.uint8) for c in crops])).permute(0, 3, 1, 2)
        return embed_chips(self.module, chips, self.device)

    def encode(self, frame: Image.Image) -> list[EncodedFace]:
        detections = self.detect(frame)
        aligned = self.align(frame, detections)
        vectors = self.embed([crop for crop, _ in aligned])
        return [EncodedFace(d, crop, quality, vector)
                for d, (crop, quality), vector in zip(detections, aligned, vectors, strict=True)]
