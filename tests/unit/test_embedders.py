import numpy as np
import pytest
from PIL import Image

from mimamori.core.config import EmbedderConfig, load_settings
from mimamori.models.embedders import check_weights, embedder_version, load_embedder
from mimamori.models.registry import MissingWeightsError, embedder_spec
from tests.support import edits


def test_dlib_weights_come_from_their_package_and_the_version_names_the_file_and_its_hash():
    version = embedder_version(EmbedderConfig(name="dlib-resnet"))
    assert version.startswith("dlib-resnet/v1@dlib_face_recognition_resnet_model_v1.dat#")
    assert len(version.rsplit("#", 1)[1]) == 12


def test_without_weights_a_model_refuses_to_start_unless_random_weights_are_allowed(tmp_path):
    with pytest.raises(MissingWeightsError, match="weights_path"):
        check_weights(EmbedderConfig(name="facenet-vggface2"))
    with pytest.raises(MissingWeightsError, match="not found"):
        check_weights(EmbedderConfig(name="dlib-resnet", weights_path=tmp_path / "missing.dat"))
    loaded = load_embedder(EmbedderConfig(name="facenet-vggface2", allow_random_weights=True))
    assert loaded.version.endswith("@random-init-20191231")


def test_the_local_profile_uses_the_model_with_real_weights():
    settings = load_settings("local")
    assert settings.models.embedder.name == "dlib-resnet"
    check_weights(settings.models.embedder)


def test_templates_put_the_landmarks_inside_the_crop_eyes_above_mouth():
    for name in ("dlib-resnet", "facenet-vggface2"):
        spec = embedder_spec(name)
        points = np.array(spec.landmarks_in_crop())
        assert ((points > 0) & (points < spec.input_size)).all()
        assert points[0, 0] < points[1, 0] and points[0, 1] < points[3, 1]


def test_every_edit_returns_an_rgb_image_and_face_keeping_edits_keep_the_face():
    image = Image.effect_noise((400, 300), 80).convert("RGB")
    face = (150.0, 60.0, 250.0, 180.0)
    for edit in edits.EDITS:
        out = edit.apply(image, [face])
        assert out.mode == "RGB" and out.width > 50 and out.height > 30, edit.name
    box = tuple(round(v) for v in face)
    for name in ("pixelate_background", "pixelate_body"):
        edit = next(e for e in edits.EDITS if e.name == name)
        out = edit.apply(image, [face])
        assert np.array_equal(np.asarray(out.crop(box)), np.asarray(image.crop(box))), name
        assert not np.array_equal(np.asarray(out), np.asarray(image)), name
