import numpy as np
import pytest
from PIL import Image

from mimamori.models.alignment import align_face, face_quality, similarity_transform
from mimamori.models.registry import embedder_spec


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 100, size=(5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ (scale * rotation).T + shift
    matrix = similarity_transform(points, moved)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


@pytest.mark.parametrize("scale", [0.8, 2.5, 6.0])  # up-sampled, one and two pyramid levels
@pytest.mark.parametrize("model", ["facenet-vggface2", "dlib-resnet"])
def test_aligned_crop_puts_the_landmarks_on_the_template(model, scale):
    spec = embedder_spec(model)
    template = np.array(spec.landmarks_in_crop())
    # Draw five dots where a rotated, scaled face would have its landmarks.
    matrix = similarity_transform(template, template * scale + 40)
    landmarks = template @ matrix[:, :2].T + matrix[:, 2]
    frame = Image.new("RGB", (1200, 1200), (0, 0, 0))
    pixels = frame.load()
    dot = max(1, round(1.2 * scale))
    for x, y in landmarks:
        for dx in range(-dot, dot + 1):
            for dy in range(-dot, dot + 1):
                pixels[round(x) + dx, round(y) + dy] = (255, 255, 255)
    crop = np.asarray(align_face(frame, landmarks, spec).convert("L"), dtype=np.float64)
    assert crop.shape == (spec.input_size, spec.input_size)
    # Crop pixels 0 and size-1 sit on the template frame's edges (dlib's chip convention).
    expected = template * (spec.input_size - 1) / spec.input_size
    for x, y in expected:
        cx, cy = round(x), round(y)
        window = crop[cy - 4:cy + 5, cx - 4:cx + 5]
        weights = window / window.sum()
        ys, xs = np.mgrid[cy - 4:cy + 5, cx - 4:cx + 5]
        # Each dot was drawn at a rounded frame pixel: up to half a frame pixel off.
        tolerance = 0.5 / scale + 0.3
        assert window.max() > 80
        assert abs((weights * xs).sum() - x) < tolerance and abs((weights * ys).sum() - y) < tolerance


def test_quality_prefers_large_frontal_faces():
    spec = embedder_spec("facenet-vggface2")
    aligned = Image.effect_noise((spec.input_size, spec.input_size), 60).convert("RGB")
    frontal = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], dtype=float)
    turned = frontal.copy()
    turned[2, 0] = 68  # the nose near one eye: the head is turned
    big, small = np.array([0, 0, 200, 200.0]), np.array([0, 0, 30, 30.0])
    assert face_quality(aligned, big, frontal)["quality"] > face_quality(aligned, big, turned)["quality"]
    assert face_quality(aligned, big, frontal)["quality"] > face_quality(aligned, small, frontal)["quality"]
