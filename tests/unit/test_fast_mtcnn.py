"""FastMTCNN (models/fast_mtcnn.py) against facenet-pytorch's MTCNN: the same faces, boxes and
landmarks within a pixel, scores within 1e-3, on the shared photos and LFW samples.

Both run on the same pixels: each photo scaled as FaceDetector scales it (at most 1280 px a
side), the group photo also at a quarter and a half (faces of 17-60 px), and 40 LFW photos.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mimamori.core.config import DetectorConfig
from mimamori.models.detector import MTCNN_MIN_FACE_SIZE, FaceDetector
from mimamori.models.fast_mtcnn import FastMTCNN, pack_levels, pyramid_scales

PHOTOS = ("angelina_jolie", "kate_siegel", "paul_rudd", "shea_whigham", "multiface")
THRESHOLDS = DetectorConfig().thresholds
BOX_PX, POINT_PX, SCORE = 1.0, 1.0, 1e-3
CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA device (CI has none; docs/benchmarks.md has the GPU run)")


def scaled(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((max(1, round(image.width * factor)), max(1, round(image.height * factor))),
                        Image.Resampling.BILINEAR)


@pytest.fixture(scope="module")
def photos(testdata) -> dict[str, Image.Image]:
    found = {}
    for name in PHOTOS:
        image = Image.open(testdata / "faces" / f"{name}.jpg").convert("RGB")
        found[name] = scaled(image, min(1.0, 1280 / max(image.size)))
    group = Image.open(testdata / "faces" / "multiface.jpg").convert("RGB")
    found["multiface@0.25"] = scaled(group, 0.25)
    found["multiface@0.5"] = scaled(group, 0.5)
    people = sorted(p for p in (testdata / "lfw").iterdir() if p.is_dir())
    for person in people[::4][:40]:
        first = sorted(person.glob("*.jpg"))[0]
        found[f"lfw/{first.stem}"] = Image.open(first).convert("RGB")
    return found


@pytest.fixture(scope="module")
def reference(photos) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    from facenet_pytorch import MTCNN

    torch.set_num_threads(1)
    mtcnn = MTCNN(keep_all=True, device="cpu", min_face_size=MTCNN_MIN_FACE_SIZE, thresholds=list(THRESHOLDS),
                  post_process=False, select_largest=False)
    found = {}
    for name, image in photos.items():
        boxes, probs, points = mtcnn.detect(image, landmarks=True)
        if boxes is None:
            boxes, probs, points = np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        found[name] = (np.asarray(boxes, np.float64), np.asarray(probs, np.float64), np.asarray(points, np.float64))
    return found


def differences(ref, got) -> tuple[float, float, float]:
    """Largest box, landmark and score difference, each reference face paired with its nearest."""
    (rb, rp, rl), (gb, gp, gl) = ref, got
    assert len(rb) == len(gb), f"{len(rb)} faces from facenet-pytorch, {len(gb)} from FastMTCNN"
    worst = [0.0, 0.0, 0.0]
    for i in range(len(rb)):
        j = int(np.argmin(np.abs(gb - rb[i]).max(axis=1)))
        worst = [max(worst[0], float(np.abs(gb[j] - rb[i]).max())),
                 max(worst[1], float(np.abs(gl[j] - rl[i]).max())),
                 max(worst[2], abs(float(gp[j]) - float(rp[i])))]
    return tuple(worst)


def assert_parity(reference, photos, results) -> None:
    for name, got in zip(photos, results, strict=True):
        box, point, score = differences(reference[name], got)
        assert box <= BOX_PX and point <= POINT_PX and score <= SCORE, (name, box, point, score)


def test_fast_mtcnn_finds_what_facenet_pytorch_finds(photos, reference):
    fast = FastMTCNN("cpu", min_face_size=MTCNN_MIN_FACE_SIZE, thresholds=THRESHOLDS)
    assert_parity(reference, photos, [fast.detect([image])[0] for image in photos.values()])
    assert sum(len(reference[n][0]) for n in photos) >= 50  # the photos do have faces: 10 + 12 + the LFW ones
    assert len(reference["multiface"][0]) == 6 and len(reference["multiface@0.25"][0]) >= 5


def test_images_of_different_sizes_share_one_call(photos, reference):
    fast = FastMTCNN("cpu", min_face_size=MTCNN_MIN_FACE_SIZE, thresholds=THRESHOLDS)
    names = ["multiface@0.5", "kate_siegel", *[n for n in photos if n.startswith("lfw/")][:6], "multiface@0.25"]
    assert_parity(reference, names, fast.detect([photos[n] for n in names]))


def test_the_packed_canvas_gives_the_same_faces(photos, reference):
    """All pyramid levels of all images in one P-Net pass: the layout the GPU uses, checked here on the CPU."""
    fast = FastMTCNN("cpu", min_face_size=MTCNN_MIN_FACE_SIZE, thresholds=THRESHOLDS, pack_pixels=1 << 40)
    names = ["multiface", "multiface@0.25", *[n for n in photos if n.startswith("lfw/")][:8]]
    assert_parity(reference, names, fast.detect([photos[n] for n in names]))


@CUDA
def test_on_cuda_the_same_faces_as_facenet_pytorch_on_the_same_gpu(photos):
    """The GPU's own layout on a GPU (each call's pyramids on one canvas, one P-Net pass), against
    facenet-pytorch on the same GPU in full float32. Not against the CPU: facenet-pytorch itself
    moves boxes by up to 4.8 px between the CPU and an H200 (cuDNN's summation order through
    MTCNN's thresholds and NMS; docs/benchmarks.md)."""
    from facenet_pytorch import MTCNN

    from mimamori.models.devices import full_float32

    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    mtcnn = MTCNN(keep_all=True, device="cuda", min_face_size=MTCNN_MIN_FACE_SIZE, thresholds=list(THRESHOLDS),
                  post_process=False, select_largest=False)
    on_gpu = {}
    with full_float32(torch.device("cuda")):
        for name, image in photos.items():
            boxes, probs, points = mtcnn.detect(image, landmarks=True)
            on_gpu[name] = ((np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))) if boxes is None else
                            (np.asarray(boxes, np.float64), np.asarray(probs, np.float64),
                             np.asarray(points, np.float64)))
    fast = FastMTCNN("cuda", min_face_size=MTCNN_MIN_FACE_SIZE, thresholds=THRESHOLDS)
    assert_parity(on_gpu, photos, [fast.detect([image])[0] for image in photos.values()])
    assert_parity(on_gpu, photos, fast.detect(list(photos.values())))
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before  # put back


def test_levels_are_packed_at_even_offsets_without_overlap():
    sizes = [(b, k, h, w, 1.0) for b, (h0, w0) in enumerate([(747, 769), (301, 201)])
             for k, (h, w) in enumerate([(h0, w0), (h0 // 2 + 1, w0 // 2), (h0 // 3, w0 // 3 + 1), (13, 12)])]
    levels, height, width = pack_levels(sizes)
    occupied = np.zeros((height, width), dtype=int)
    for lv in levels:
        assert lv.top % 2 == 0 and lv.left % 2 == 0
        occupied[lv.top:lv.top + lv.height, lv.left:lv.left + lv.width] += 1
    assert occupied.max() == 1
    assert occupied.sum() / occupied.size > 0.6


def test_no_face_and_too_small_images_give_nothing():
    fast = FastMTCNN("cpu")
    grey = Image.new("RGB", (320, 240), (128, 128, 128))
    tiny = Image.new("RGB", (15, 15), (200, 100, 50))
    assert pyramid_scales(15, 15, 20, 0.709) == []
    for boxes, probs, points in fast.detect([grey, tiny]):
        assert boxes.shape == (0, 4) and probs.shape == (0,) and points.shape == (0, 5, 2)
    assert fast.detect([]) == []


def test_face_detector_gives_the_same_detections_with_either_implementation(photos):
    frames = [photos["multiface"], photos["kate_siegel"], photos["multiface@0.25"]]
    facenet = FaceDetector(DetectorConfig(implementation="facenet"), torch.device("cpu")).detect(frames)
    fast = FaceDetector(DetectorConfig(implementation="fast"), torch.device("cpu")).detect(frames)
    for a, b in zip(facenet, fast, strict=True):
        assert len(a) == len(b) and len(a) > 0
        for x, y in zip(a, b, strict=True):
            assert np.abs(x.box - y.box).max() <= BOX_PX and np.abs(x.landmarks - y.landmarks).max() <= POINT_PX
            assert abs(x.score - y.score) <= SCORE
