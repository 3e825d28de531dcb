"""Detection with and without a busy second Python thread (issue 21: why the worker's detect is slower).

    .venv/bin/python bench/detect_contention.py

docs/benchmarks.md suspects that FastMTCNN loses more than facenet-pytorch's MTCNN inside a Beam
worker because the worker's other Python threads take the interpreter lock between its many small
calls. This times both implementations on the five shared portraits (one image a call, best of two
rounds, the worker's torch threads) alone and beside a thread that runs Python for 1 ms and sleeps
for 1 ms, at Python's default switch interval (5 ms) and at 0.5 ms.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mimamori.core.config import load_settings  # noqa: E402
from mimamori.models.detector import FaceDetector  # noqa: E402
from mimamori.models.devices import limit_torch_threads, pick_device  # noqa: E402


def busy(stop: threading.Event) -> None:
    while not stop.is_set():
        began = time.perf_counter()
        while time.perf_counter() - began < 0.001:
            pass
        time.sleep(0.001)


def main() -> None:
    settings = load_settings()
    device = pick_device("cpu")
    limit_torch_threads(device)
    config = settings.models.detector
    detectors = {"fast": FaceDetector(config.model_copy(update={"implementation": "fast"}), device),
                 "facenet": FaceDetector(config.model_copy(update={"implementation": "facenet"}), device)}
    images = [Image.open(p).convert("RGB") for p in sorted((ROOT.parent / "shared/testdata/faces").glob("*.jpg"))]

    def timed(detector: FaceDetector) -> float:
        began = time.perf_counter()
        for image in images:
            detector.detect([image])
        return time.perf_counter() - began

    for detector in detectors.values():
        timed(detector)  # warm
    print(f"torch threads {torch.get_num_threads()}, {len(images)} images")
    for interval in (0.005, 0.0005):
        sys.setswitchinterval(interval)
        for beside in (False, True):
            stop = threading.Event()
            thread = threading.Thread(target=busy, args=(stop,), daemon=True)
            if beside:
                thread.start()
            best = {name: min(timed(d) for _ in range(2)) for name, d in detectors.items()}
            stop.set()
            label = "busy thread" if beside else "alone"
            print(f"switch {interval} s, {label}: fast {best['fast']:.2f} s, facenet {best['facenet']:.2f} s, "
                  f"ratio {best['facenet'] / best['fast']:.2f}", flush=True)


if __name__ == "__main__":
    main()
