"""Detection fallbacks (models.detector.fallbacks): a frame with no face is tried again turned by
quarter turns and, when it is a thumbnail, upscaled; what is found there comes back in the
frame's own pixels, so alignment and crops work on it as on any face.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mimamori.core.config import DetectionFallbacksConfig, DetectorConfig
from mimamori.models.detector import _CLOCKWISE, FaceDetector, turned_back
from tests.support import edits


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_turned_back_undoes_a_quarter_turn(rotation):
    marker = np.zeros((50, 100), np.uint8)
    marker[20, 10] = 255
    image = Image.fromarray(marker)
    turned = np.asarray(image.transpose(_CLOCKWISE[rotation]) if rotation else image)
    y, x = np.argwhere(turned == 255)[0]
    assert turned_back(np.array([x + 0.5, y + 0.5]), rotation, image.size) == pytest.approx([10.5, 20.5])


def test_turned_back_refuses_other_angles():
    with pytest.raises(ValueError):
        turned_back(np.zeros(2), 45, (10, 10))


@pytest.fixture(scope="module")
def portrait(testdata) -> Image.Image:
    return Image.open(sorted((testdata / "lfw").glob("*/*_0001.jpg"))[0]).convert("RGB")


def detector(**fallbacks) -> FaceDetector:
    return FaceDetector(DetectorConfig(fallbacks=DetectionFallbacksConfig(**fallbacks)), torch.device("cpu"))


def test_a_face_on_its_side_is_found_turned_and_mapped_back(portrait):
    upright = detector().detect([portrait])[0]
    assert upright and upright[0].fallback == ""
    sideways = edits.rotate(portrait, 90)  # turned clockwise: the face lies on its side
    assert detector().detect([sideways])[0] == []
    found = detector(rotations=(90, 180, 270)).detect([sideways])[0]
    assert found and found[0].fallback == "rotated 270"
    # The upright face's box and eyes, turned as the picture was, are where the fallback says.
    expected_box = turned_back(upright[0].box.reshape(2, 2), 270, portrait.size)
    expected_box = np.concatenate([expected_box.min(axis=0), expected_box.max(axis=0)])
    assert found[0].box == pytest.approx(expected_box, abs=6)
    expected_eyes = turned_back(upright[0].landmarks[:2], 270, portrait.size)
    assert found[0].landmarks[:2] == pytest.approx(expected_eyes, abs=4)


def test_frames_with_faces_are_not_tried_again(portrait, monkeypatch):
    fallbacks = detector(rotations=(90, 180, 270), upscale_below=400)
    calls = []
    original = fallbacks._detect
    monkeypatch.setattr(fallbacks, "_detect", lambda frames: calls.append(len(frames)) or original(frames))
    assert fallbacks.detect([portrait])[0]
    assert calls == [1]


def test_a_thumbnail_is_upscaled_only_when_nothing_was_found(portrait):
    tiny = edits.thumbnail(portrait, 36)  # a face of about 14 px: under min_face_size as given
    assert detector().detect([tiny])[0] == []
    found = detector(upscale_below=160).detect([tiny])[0]
    assert found and found[0].fallback == "upscaled"
    x1, y1, x2, y2 = found[0].box
    assert 0 <= x1 < x2 <= tiny.width + 2 and 0 <= y1 < y2 <= tiny.height + 2
    assert 8 < x2 - x1 < 24  # an LFW face is about 40% of its photo's side
