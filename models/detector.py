"""Face detection with MTCNN and facenet-pytorch's weights (they ship inside its wheel).

Large frames are detected on a downscaled copy (MTCNN's cost grows with the pixel count,
and faces in a 4000-pixel photo are not small), then boxes and landmarks are mapped back
to full resolution for alignment. ``models.detector.implementation`` picks facenet-pytorch's
own MTCNN (frames of one size in one batch) or ``FastMTCNN`` (models/fast_mtcnn.py: the
same outputs, every frame of the item in one call).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from mimamori.core.config import DetectorConfig

# MTCNN's own pyramid starts at 20 px faces; models.detector.min_face_size filters afterwards.
MTCNN_MIN_FACE_SIZE = 20


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # x1, y1, x2, y2 in frame pixels
    landmarks: np.ndarray  # 5 x 2 in frame pixels
    score: float


class FaceDetector:
    def __init__(self, config: DetectorConfig, device: torch.device, max_side: int = 1280):
        self.config = config
        self.max_side = max_side
        self.fast = None
        if config.implementation == "fast":
            from mimamori.models.fast_mtcnn import FastMTCNN

            self.fast = FastMTCNN(device, min_face_size=MTCNN_MIN_FACE_SIZE, thresholds=config.thresholds)
        else:
            from facenet_pytorch import MTCNN

            self.mtcnn = MTCNN(keep_all=True, device=device, min_face_size=MTCNN_MIN_FACE_SIZE,
                               thresholds=list(config.thresholds), post_process=False, select_largest=False)

    def _small(self, frame: Image.Image) -> tuple[Image.Image, float]:
        width, height = frame.size
        scale = min(1.0, self.max_side / max(width, height))
        if scale == 1.0:
            return frame, scale
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return frame.resize(size, Image.Resampling.BILINEAR), scale

    def detect(self, frames: list[Image.Image]) -> list[list[Detection]]:
        """Faces of each frame, best first, capped at ``max_faces_per_image``."""
        if self.fast is not None:
            small = [self._small(frame) for frame in frames]
            found = self.fast.detect([image for image, _ in small])
            return [self._keep(boxes, probs, points, scale)
                    for (boxes, probs, points), (_, scale) in zip(found, small, strict=True)]
        results: list[list[Detection]] = [[] for _ in frames]
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, frame in enumerate(frames):
            by_size.setdefault(frame.size, []).append(i)
        for (width, height), indexes in by_size.items():
            scale = min(1.0, self.max_side / max(width, height))
            small = [frames[i] if scale == 1.0 else
                     frames[i].resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                      Image.Resampling.BILINEAR)
                     for i in indexes]
            with torch.inference_mode():
                if len(small) == 1:
                    boxes, probs, points = self.mtcnn.detect(small[0], landmarks=True)
                    boxes, probs, points = [boxes], [probs], [points]
                else:
                    boxes, probs, points = self.mtcnn.detect(small, landmarks=True)
            for i, b, p, pts in zip(indexes, boxes, probs, points, strict=True):
                results[i] = self._keep(b, p, pts, scale)
        return results

    def _keep(self, boxes, probs, points, scale: float) -> list[Detection]:
        if boxes is None or len(boxes) == 0:
            return []
        found = []
        for box, prob, pts in zip(boxes, probs, points, strict=True):
            score = float(prob)
            box = np.asarray(box, dtype=np.float64) / scale
            side = min(box[2] - box[0], box[3] - box[1])
            if score < self.config.min_confidence or side < self.config.min_face_size:
                continue
            found.append(Detection(box, np.asarray(pts, dtype=np.float64) / scale, score))
        found.sort(key=lambda d: d.score, reverse=True)
        return found[: self.config.max_faces_per_image]
