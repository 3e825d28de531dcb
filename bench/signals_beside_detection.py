"""What the image signals' work costs detection running beside it (issue 20, acceptance 4).

    .venv/bin/python bench/signals_beside_detection.py [--images 40] [--rounds 2] [--pace 0.25]

In the pipeline, Dedupe's PDQ and ScoreLocalFeatures' keypoint scoring run in read-ahead threads
beside detection (docs/pipeline.md, "Read-ahead"). On a two-core box what they cost the pipeline
is less their own time than what they take from detection: the interpreter's lock, which
detection needs between its many small torch calls, and CPU. This runs FastMTCNN over the
bench images (bench/pipeline.py's, one torch thread, as the worker runs it) alone and beside one
thread that does one item of a signal's work every ``--pace`` seconds, for each way of doing it:

* PDQ through pdqhash's binding (which holds the lock through its C++), and through
  ``mimamori.media.pdq.pdq_hash`` (the same C++ through ctypes, lock let go);
* keypoints extracted and scored against 20 LFW reference images (one watched case, as
  ``bench/pipeline.py --signals`` has it), with faiss's search on two OpenMP threads (its
  default here, before) and on one (``FeatureGallery`` now).

It prints detection's wall and thread-CPU seconds (their difference: what it waited for the lock
or a core), the items the side thread did, and the
process's CPU seconds per side item beyond detection's own. Variants are interleaved by round.
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench.pipeline import bench_images, reference_photos  # noqa: E402
from mimamori.core.config import load_settings  # noqa: E402
from mimamori.media import local_features  # noqa: E402
from mimamori.media.decode import decode_media  # noqa: E402
from mimamori.media.pdq import _pixels, fitted, pdq_hash  # noqa: E402
from mimamori.models.face_encoder import FaceEncoder  # noqa: E402


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def faiss_threads(count: int) -> Callable[[], None]:
    """Make FeatureGallery's searches use ``count`` OpenMP threads; returns the undo."""
    import faiss

    real = faiss.omp_set_num_threads
    faiss.omp_set_num_threads = lambda _n: real(count)
    return lambda: setattr(faiss, "omp_set_num_threads", real)


def beside(detect_all: Callable[[], None], work: Callable[[int], None] | None, items: int, pace: float
           ) -> dict[str, float]:
    """Detection's times while a thread does ``work(i)`` for i = 0, 1, ... every ``pace`` seconds."""
    stop, done = threading.Event(), [0]

    def side() -> None:
        while work is not None and not stop.is_set():
            work(done[0] % items)
            done[0] += 1
            stop.wait(pace)

    thread = threading.Thread(target=side)
    cpu_before = process_cpu()
    thread.start()
    wall, cpu = time.perf_counter(), time.thread_time()
    detect_all()
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    stop.set()
    thread.join()
    extra = process_cpu() - cpu_before - cpu
    return {"wall": wall, "cpu": cpu, "items": done[0], "cpu_per_item": extra / done[0] if done[0] else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pace", type=float, default=0.25, help="seconds between the side thread's items")
    args = parser.parse_args()

    import pdqhash

    settings = load_settings()
    encoder = FaceEncoder(settings)
    frames = [decode_media(data, "image/jpeg").frames[0].image for data in bench_images(args.images)]
    side = settings.matching.scraped_pdq_max_side
    gallery = local_features.FeatureGallery()
    for path in reference_photos(20):
        gallery.add(0, local_features.extract_reference(Image.open(path).convert("RGB")))

    def detect_all() -> None:
        for frame in frames:
            encoder.detect(frame)

    def scores(i: int) -> None:
        gallery.scores(local_features.extract(frames[i]))

    def scores_on(threads: int) -> Callable[[int], None]:
        def work(i: int) -> None:
            undo = faiss_threads(threads)
            try:
                scores(i)
            finally:
                undo()
        return work

    variants: dict[str, Callable[[int], None] | None] = {
        "alone": None,
        "PDQ, pdqhash's binding (lock held)": lambda i: pdqhash.compute(_pixels(fitted(frames[i], side))),
        "PDQ, mimamori.media.pdq (lock let go)": lambda i: pdq_hash(frames[i], side),
        "keypoints scored, faiss on 2 threads": scores_on(2),
        "keypoints scored, faiss on 1 thread": scores_on(1),
    }
    detect_all()  # warm
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for _round in range(args.rounds):
        for name, work in variants.items():
            results[name].append(beside(detect_all, work, len(frames), args.pace))
            print(f"{name}: {results[name][-1]}", file=sys.stderr, flush=True)

    print(f"| {len(frames)} images, FastMTCNN, {torch.get_num_threads()} torch thread(s); "
          f"side thread: one item every {args.pace} s "
          "| detect wall s | detect CPU s | detect waited s | side items | process CPU ms a side item |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, runs in results.items():
        for run in runs:
            per_item = f"{1000 * run['cpu_per_item']:.0f}" if run["items"] else ""
            print(f"| {name} | {run['wall']:.2f} | {run['cpu']:.2f} | {run['wall'] - run['cpu']:.2f} | {run['items']} "
                  f"| {per_item} |")


if __name__ == "__main__":
    main()
