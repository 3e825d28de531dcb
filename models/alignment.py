"""Five-point face alignment and a face quality score.

A similarity transform (rotation, uniform scale, translation) maps the detector's five
landmarks onto the embedder's template; the crop is warped from the full-resolution
frame, so a small face detected on a downscaled copy still gets every pixel it has.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from models.registry import EmbedderSpec


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity matrix that best maps ``source`` points onto ``target`` (Umeyama, 1991)."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    src_mean, dst_mean = source.mean(axis=0), target.mean(axis=0)
    src, dst = source - src_mean, target - dst_mean
    covariance = dst.T @ src / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    variance = (src**2).sum() / len(source)
    scale = (singular * np.diag(sign)).sum() / variance if variance > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align_face(frame: Image.Image, landmarks: np.ndarray, spec: EmbedderSpec) -> Image.Image:
    """Warp the face with these five landmarks to the embedder's input crop."""
    matrix = similarity_transform(landmarks, np.array(spec.landmarks_in_crop()))
    # PIL wants the inverse map: output pixel -> input pixel.
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)[:2].ravel()
    return frame.transform((spec.input_size, spec.input_size), Image.Transform.AFFINE, tuple(inverse),
                           resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))


def face_quality(aligned: Image.Image, box: np.ndarray, landmarks: np.ndarray) -> dict[str, float]:
    """Size, sharpness and frontal-pose scores in [0, 1], and their product as ``quality``.

    Reviewers sort by it, and a search can skip faces too small, blurred or turned away to
    match reliably.
    """
    width, height = float(box[2] - box[0]), float(box[3] - box[1])
    size = min(1.0, min(width, height) / 112.0)
    grey = np.asarray(aligned.convert("L"), dtype=np.float64)
    laplacian = (grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1])
    sharpness = float(min(1.0, laplacian.var() / 500.0))
    left_eye, right_eye, nose = landmarks[0], landmarks[1], landmarks[2]
    eye_span = float(np.linalg.norm(right_eye - left_eye)) or 1.0
    # The nose sits between the eyes on a frontal face; it drifts toward one eye as the head turns.
    offset = abs(float(nose[0] - (left_eye[0] + right_eye[0]) / 2.0)) / eye_span
    pose = float(max(0.0, 1.0 - 2.0 * offset))
    return {"size": size, "sharpness": sharpness, "pose": pose, "quality": size * (0.5 + 0.5 * sharpness) * pose}
