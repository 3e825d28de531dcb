"""Face detection with facenet-pytorch's MTCNN (its weights ship inside its wheel).

Large frames are detected on a downscaled copy (MTCNN's cost grows with the pixel count,
and faces in a 4000-pixel photo are not small), then boxes and landmarks are mapped back
to full resolution for alignment. Frames of one size are detected in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from mimamori.core.config import DetectorConfig


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # x1, y1, x2, y2 in frame pixels
    landmarks: np.ndarray  # 5 x 2 in frame pixels
    score: float


class FaceDetector:
    def __init__(self, config: DetectorConfig, device: torch.device, max_side: int = 1280):
        from facenet_pytorch import MTCNN

        self.config = config
        self.max_side = max_side
        self.mtcnn = MTCNN(keep_all=True, device=device, min_face_size=20,
                           thresholds=list(config.thresholds), post_process=False, select_largest=False)

    def detect(self, frames: list[Image.Image]) -> list[list[Detection]]:
        """Faces of each frame, best first, capped at ``max_faces_per_image``."""
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
        if boxes is None:
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
