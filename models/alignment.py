"""Five-point face alignment and a face quality score.

A similarity transform (rotation, uniform scale, translation) maps the detector's five
landmarks onto the embedder's template; the crop is warped from the full-resolution
frame, so a small face detected on a downscaled copy still gets every pixel it has.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from mimamori.models.registry import EmbedderSpec


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
    """Warp the face with these five landmarks to the embedder's input crop.

    The geometry follows dlib's ``extract_image_chip``, which defines the chips dlib's
    network was trained on: the similarity is fitted from the crop's template to the image
    (least squares in that direction), crop pixels 0 and size-1 sit on the template frame's
    edges, the image is halved with a Gaussian pyramid while the crop is still less than
    half its scale (so a big face is not aliased), and the rest is bilinear.
    """
    size = spec.input_size
    template = np.array(spec.landmarks_in_crop()) * (size - 1) / size
    landmarks = np.asarray(landmarks, dtype=np.float64)
    to_image = similarity_transform(template, landmarks)
    scale = float(np.sqrt(abs(np.linalg.det(to_image[:, :2]))))  # image pixels per crop pixel

    # Work on the part of the frame the crop covers (with a border for the pyramid filter).
    corners = np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]], dtype=np.float64)
    covered = corners @ to_image[:, :2].T + to_image[:, 2]
    border = 4 * max(1.0, scale)
    left, top = (np.floor(covered.min(axis=0) - border)).astype(int)
    right, bottom = (np.ceil(covered.max(axis=0) + border)).astype(int)
    left, top = max(0, left), max(0, top)
    right, bottom = min(frame.width, right), min(frame.height, bottom)
    if right <= left or bottom <= top:
        return Image.new("RGB", (size, size))
    region = frame.crop((left, top, right, bottom))
    offset = np.array([left, top], dtype=np.float64)

    factor = 1
    while scale / (factor * 2) > 1.0 and min(region.size) >= 4:
        region = region.filter(ImageFilter.GaussianBlur(1.0)).reduce(2)
        factor *= 2
    # Crop pixel -> region pixel, with pixel centres at +0.5 as PIL expects.
    to_region = to_image.copy()
    to_region[:, 2] -= offset
    to_region = np.vstack([to_region / factor, [0.0, 0.0, 1.0]])
    to_region[:2, 2] += (1.0 / factor - 1.0) * 0.5  # centre of a halved pixel block
    centre = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    matrix = centre @ to_region @ np.linalg.inv(centre)
    return region.transform((size, size), Image.Transform.AFFINE, tuple(matrix[:2].ravel()),
                            resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))


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
