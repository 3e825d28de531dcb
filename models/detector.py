"""Face detection with MTCNN and facenet-pytorch's weights (they ship inside its wheel), or YuNet.

Large frames are detected on a downscaled copy (MTCNN's cost grows with the pixel count,
and faces in a 4000-pixel photo are not small), then boxes and landmarks are mapped back
to full resolution for alignment. ``models.detector.implementation`` picks facenet-pytorch's
own MTCNN (frames of one size in one batch) or ``FastMTCNN`` (models/fast_mtcnn.py: the
same outputs, every frame of the item in one call). The model in the registry says which
detector (``EmbedderSpec.detector``): YuNet (models/yunet.py) finds other faces, so it is a
model of its own with its own collections, never a setting beside MTCNN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from mimamori.core.config import DetectorConfig
from mimamori.models.devices import full_float32

# MTCNN's own pyramid starts at 20 px faces; models.detector.min_face_size filters afterwards.
MTCNN_MIN_FACE_SIZE = 20


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # x1, y1, x2, y2 in frame pixels
    landmarks: np.ndarray  # 5 x 2 in frame pixels
    score: float
    # How it was found when the frame as given showed none (models.detector.fallbacks):
    # "upscaled", "rotated 90" (clockwise degrees), "upscaled, rotated 90"; "" when as given.
    fallback: str = ""


# Pillow's ROTATE_n turn counter-clockwise; these are clockwise turns.
_CLOCKWISE = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


def turned_back(points: np.ndarray, rotation: int, size: tuple[int, int]) -> np.ndarray:
    """Points of a frame turned ``rotation`` degrees clockwise, in the coordinates of the frame as given.

    ``size`` is the frame's (width, height) before the turn; coordinates are continuous
    (pixel edges at integers), so a turn maps the frame's corners onto the turned frame's.
    """
    width, height = size
    x, y = points[..., 0], points[..., 1]
    if rotation == 90:  # (x, y) -> (height - y, x)
        back = np.stack([y, height - x], axis=-1)
    elif rotation == 180:
        back = np.stack([width - x, height - y], axis=-1)
    elif rotation == 270:  # (x, y) -> (y, width - x)
        back = np.stack([width - y, x], axis=-1)
    elif rotation == 0:
        back = np.stack([x, y], axis=-1)
    else:
        raise ValueError(f"rotation must be a quarter turn, not {rotation}")
    return back


def _mapped_back(detection: Detection, scale: float, rotation: int, size: tuple[int, int], how: str) -> Detection:
    """A detection on an upscaled and turned copy of a frame, in the frame's own pixels."""
    scaled = (round(size[0] * scale), round(size[1] * scale))
    corners = turned_back(detection.box.reshape(2, 2), rotation, scaled) / scale
    box = np.concatenate([corners.min(axis=0), corners.max(axis=0)])
    landmarks = turned_back(detection.landmarks, rotation, scaled) / scale
    return Detection(box, landmarks, detection.score, how)


DETECTORS = ("mtcnn", "yunet")


def downscaled(frame: Image.Image, max_side: int) -> tuple[Image.Image, float]:
    """The frame the detector sees, at most ``max_side`` px a side (bilinear), and its scale."""
    width, height = frame.size
    scale = min(1.0, max_side / max(width, height))
    if scale == 1.0:
        return frame, scale
    return frame.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                        Image.Resampling.BILINEAR), scale


class FaceDetector:
    def __init__(self, config: DetectorConfig, device: torch.device, max_side: int = 1280,
                 detector: str = "mtcnn"):
        if detector not in DETECTORS:
            raise ValueError(f"unknown detector {detector!r}; known: {', '.join(DETECTORS)}")
        self.config = config
        self.device = device
        self.max_side = max_side
        self.fast = None
        self.yunet = None
        self.min_score = config.min_confidence
        if detector == "yunet":
            from mimamori.models.fast_mtcnn import FastMTCNN
            from mimamori.models.yunet import YuNet

            # OpenCV's wheel has no CUDA: YuNet runs on the CPU, with the worker's thread budget.
            self.yunet = YuNet(config.yunet_score_threshold, threads=torch.get_num_threads())
            self.min_score = config.yunet_score_threshold
            # YuNet's own landmarks scatter twice as widely as MTCNN's in dlib's chip frame and
            # lost re-uploads (docs/models.md); MTCNN's O-Net places them on YuNet's boxes.
            self.landmarks = FastMTCNN(device, min_face_size=MTCNN_MIN_FACE_SIZE, thresholds=config.thresholds)
        elif config.implementation == "fast":
            from mimamori.models.fast_mtcnn import FastMTCNN

            self.fast = FastMTCNN(device, min_face_size=MTCNN_MIN_FACE_SIZE, thresholds=config.thresholds)
        else:
            from facenet_pytorch import MTCNN

            self.mtcnn = MTCNN(keep_all=True, device=device, min_face_size=MTCNN_MIN_FACE_SIZE,
                               thresholds=list(config.thresholds), post_process=False, select_largest=False)

    def detect(self, frames: list[Image.Image]) -> list[list[Detection]]:
        """Faces of each frame, best first, capped at ``max_faces_per_image``.

        A frame with no face is tried again as ``models.detector.fallbacks`` says (upscaled
        when it is a thumbnail, turned by quarter turns), every variant of every such frame in
        one more detector call; the first variant in that order that shows a face gives the
        frame's faces, mapped back to its own pixels, so alignment and crops work as usual.
        """
        results = self._detect(frames)
        fallbacks = self.config.fallbacks
        missing = [i for i, found in enumerate(results) if not found]
        if not missing or not (fallbacks.upscale_below or fallbacks.rotations):
            return results
        variants: list[tuple[int, float, int, str]] = []  # frame, scale, rotation, how
        for i in missing:
            size = frames[i].size
            scale = 1.0
            if fallbacks.upscale_below and max(size) < fallbacks.upscale_below:
                scale = fallbacks.upscale_below / max(size)
            turns = ((0,) if scale > 1.0 else ()) + tuple(r for r in fallbacks.rotations if r % 360)
            for rotation in turns:
                how = ", ".join(part for part in ("upscaled" if scale > 1.0 else "",
                                                  f"rotated {rotation}" if rotation else "") if part)
                variants.append((i, scale, rotation, how))
        if not variants:
            return results
        images = []
        for i, scale, rotation, _ in variants:
            image = frames[i]
            if scale > 1.0:
                image = image.resize((round(image.width * scale), round(image.height * scale)),
                                     Image.Resampling.BICUBIC)
            images.append(image.transpose(_CLOCKWISE[rotation]) if rotation else image)
        for (i, scale, rotation, how), found in zip(variants, self._detect(images), strict=True):
            if found and not results[i]:
                results[i] = [_mapped_back(d, scale, rotation, frames[i].size, how) for d in found]
        return results

    def _detect(self, frames: list[Image.Image]) -> list[list[Detection]]:
        batched = self.yunet or self.fast
        if batched is not None:
            small = [downscaled(frame, self.max_side) for frame in frames]
            found = batched.detect([image for image, _ in small])
            if self.yunet is not None:  # YuNet's boxes and scores, O-Net's landmarks
                placed = self.landmarks.onet_landmarks([image for image, _ in small],
                                                       [np.zeros((0, 4)) if b is None else b for b, _, _ in found])
                found = [(b, p, None if b is None else points)
                         for (b, p, _), points in zip(found, placed, strict=True)]
            return [self._keep(boxes, probs, points, scale)
                    for (boxes, probs, points), (_, scale) in zip(found, small, strict=True)]
        results: list[list[Detection]] = [[] for _ in frames]
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, frame in enumerate(frames):
            by_size.setdefault(frame.size, []).append(i)
        for indexes in by_size.values():
            pairs = [downscaled(frames[i], self.max_side) for i in indexes]
            small, scale = [image for image, _ in pairs], pairs[0][1]  # one size, one scale
            with torch.inference_mode(), full_float32(self.device):
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
            if score < self.min_score or side < self.config.min_face_size:
                continue
            landmarks = np.asarray(pts, dtype=np.float64) / scale
            if not np.isfinite(landmarks).all():  # O-Net had no pixels to place them in (a box outside the frame)
                continue
            found.append(Detection(box, landmarks, score))
        found.sort(key=lambda d: d.score, reverse=True)
        return found[: self.config.max_faces_per_image]
