"""YuNet, the second detector (issue 21): pinned weights from the installed package, the faces
MTCNN finds on the shared photos, O-Net's landmarks on its boxes, and a model of its own.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from mimamori.core.config import DetectorConfig, Settings
from mimamori.models.detector import FaceDetector
from mimamori.models.registry import DLIB_RESNET, DLIB_RESNET_YUNET, embedder_spec
from mimamori.models.yunet import YUNET_SHA256, yunet_weights


@pytest.fixture(scope="module")
def photos(testdata) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted((testdata / "faces").glob("*.jpg"))]


@pytest.fixture(scope="module")
def both(photos):
    cpu = torch.device("cpu")
    mtcnn = FaceDetector(DetectorConfig(), cpu).detect(photos)
    yunet = FaceDetector(DetectorConfig(), cpu, detector="yunet").detect(photos)
    return mtcnn, yunet


def test_the_weights_are_the_pinned_file_from_the_installed_package():
    assert hashlib.sha256(yunet_weights()).hexdigest() == YUNET_SHA256


def test_yunet_finds_the_faces_mtcnn_finds_on_the_shared_photos(both):
    mtcnn, yunet = both
    assert [len(f) for f in yunet] == [len(f) for f in mtcnn] == [1, 1, 6, 1, 1]
    for theirs, ours in zip(mtcnn, yunet, strict=True):
        for face in ours:
            nearest = min(theirs, key=lambda d, f=face: np.linalg.norm(d.box[:2] - f.box[:2]))
            x1, y1 = np.maximum(face.box[:2], nearest.box[:2])
            x2, y2 = np.minimum(face.box[2:], nearest.box[2:])
            inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
            union = np.prod(face.box[2:] - face.box[:2]) + np.prod(nearest.box[2:] - nearest.box[:2]) - inter
            assert inter / union > 0.5
            assert face.score >= DetectorConfig().yunet_score_threshold


def test_its_landmarks_are_o_nets_on_its_boxes_in_mtcnns_order(both):
    """The landmarks come from O-Net, so they land within a few pixels of MTCNN's own."""
    mtcnn, yunet = both
    for theirs, ours in zip(mtcnn, yunet, strict=True):
        for face in ours:
            nearest = min(theirs, key=lambda d, f=face: np.linalg.norm(d.landmarks - f.landmarks))
            side = face.box[2] - face.box[0]
            assert np.abs(face.landmarks - nearest.landmarks).max() < 0.05 * side
            left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
            assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
            assert left_eye[1] < nose[1] < mouth_left[1]


def test_a_picture_without_a_face_gives_none():
    blank = Image.new("RGB", (320, 240), (128, 128, 128))
    assert FaceDetector(DetectorConfig(), torch.device("cpu"), detector="yunet").detect([blank]) == [[]]


def test_the_yunet_model_has_its_own_version_and_collections():
    spec = embedder_spec(DLIB_RESNET_YUNET.name)
    assert spec.detector == "yunet" and spec.network == DLIB_RESNET.name
    assert spec.version != DLIB_RESNET.version
    settings = Settings()
    assert settings.face_collection(spec.name) != settings.face_collection(DLIB_RESNET.name)
    assert settings.enrolled_collection(spec.name) != settings.enrolled_collection(DLIB_RESNET.name)


def test_an_unknown_detector_is_refused():
    with pytest.raises(ValueError, match="unknown detector"):
        FaceDetector(DetectorConfig(), torch.device("cpu"), detector="haar")
