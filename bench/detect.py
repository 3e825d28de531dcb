"""Detection speed: facenet-pytorch's MTCNN against FastMTCNN and YuNet, measured in one run.

    .venv/bin/python bench/detect.py [--device cpu|cuda] [--threads 1,all] [--rounds 3] [--half]

For each thread count and each image set (the five shared photos at their own sizes and
fitted to 640x480, 1280x720, 1920x1080; 40 LFW photos at 250x250; ``bench/pipeline.py``'s 40
images at the detector's input size, the bare loop's work) both implementations
detect every image, one image per call as the pipeline's bare loop does, in interleaved
rounds (facenet, fast, facenet, fast, ...). Each side's best round counts (the machine is
shared: the best round is the one least disturbed), and the ratio is of those two.

It also prints each image set's arithmetic (multiply-adds of P-Net on every pyramid level,
R-Net and O-Net on the candidates FastMTCNN saw; 2 FLOPs each), the share of the CPU's
peak (a large float32 matrix product on the same threads) that each side reaches, whether
both found the same number of faces, YuNet's speed (with O-Net's landmarks, as the
``dlib-resnet-yunet`` model detects) beside them, the faces each keeps after the pipeline's
filters (score, ``min_face_size``; FastMTCNN for MTCNN; frames not scaled down as the pipeline
scales them to 1280 px), and the JPEG decode options (full decode, and
``PIL.Image.draft`` decoding at 1/2 to 1/8 scale) on the shared photos.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageOps, features  # noqa: E402

from bench.pipeline import bench_images  # noqa: E402
from mimamori.core.config import DetectorConfig  # noqa: E402
from mimamori.models.detector import MTCNN_MIN_FACE_SIZE, FaceDetector, downscaled  # noqa: E402
from mimamori.models.devices import pick_device  # noqa: E402
from mimamori.models.fast_mtcnn import FastMTCNN, level_size, pyramid_scales  # noqa: E402

TESTDATA = ROOT.parent / "shared" / "testdata"
PIPELINE_SET = "pipeline's 40"
SIZES = {"640x480": (640, 480), "1280x720": (1280, 720), "1920x1080": (1920, 1080)}
FACTOR = 0.709


def pnet_macs(height: int, width: int) -> int:
    """P-Net's multiply-adds over the whole pyramid of one image (its layers, level by level)."""
    total = 0
    for scale in pyramid_scales(height, width, MTCNN_MIN_FACE_SIZE, FACTOR):
        h, w = level_size(height, width, scale)
        h1, w1 = h - 2, w - 2  # conv1 3->10, 3x3
        hp, wp = (h1 + 1) // 2, (w1 + 1) // 2  # max pool 2/2, ceil
        h2, w2 = hp - 2, wp - 2  # conv2 10->16
        h3, w3 = h2 - 2, w2 - 2  # conv3 16->32, then the 1x1 heads 32->2 and 32->4
        total += h1 * w1 * 3 * 10 * 9 + h2 * w2 * 10 * 16 * 9 + h3 * w3 * (16 * 32 * 9 + 32 * 6)
    return total


RNET_MACS = 22 * 22 * 3 * 28 * 9 + 9 * 9 * 28 * 48 * 9 + 3 * 3 * 48 * 64 * 4 + 576 * 128 + 128 * 6
ONET_MACS = (46 * 46 * 3 * 32 * 9 + 21 * 21 * 32 * 64 * 9 + 8 * 8 * 64 * 64 * 9 + 3 * 3 * 64 * 128 * 4
             + 1152 * 256 + 256 * 16)


def peak_flops(device: torch.device, size: int = 2048, rounds: int = 5) -> float:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(rounds):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gpu_utilisation(device: torch.device) -> str:
    try:
        return f"{torch.cuda.utilization(device)}%"
    except Exception as error:  # pynvml missing, or no NVML on this machine
        return f"n/a ({type(error).__name__})"


def image_sets(wanted: list[str] | None = None) -> dict[str, list[Image.Image]]:
    """The image sets by name: all of them, or those in ``wanted``."""
    photos = [Image.open(p).convert("RGB") for p in sorted((TESTDATA / "faces").glob("*.jpg"))]
    sets = {"own sizes": photos}
    for name, size in SIZES.items():
        sets[name] = [ImageOps.fit(p, size, Image.Resampling.BILINEAR) for p in photos]
    people = sorted(p for p in (TESTDATA / "lfw").iterdir() if p.is_dir())
    sets["LFW 250x250"] = [Image.open(sorted(p.glob("*.jpg"))[0]).convert("RGB") for p in people[::4][:40]]
    # bench/pipeline.py's 40 images as its bare loop's detector sees them (at most 1280 px a side;
    # here scaled before the clock starts, in the loop inside its detect stage).
    if wanted is None or PIPELINE_SET in wanted:
        sets[PIPELINE_SET] = [downscaled(Image.open(io.BytesIO(data)).convert("RGB"), 1280)[0]
                              for data in bench_images(40)]
    return {name: images for name, images in sets.items() if wanted is None or name in wanted}


def measure(detectors: dict, images: list[Image.Image], rounds: int, device) -> tuple[dict, dict]:
    """Each side's best round: wall seconds, and this process's CPU seconds (less disturbed by
    the other work on a shared machine; on several threads it sums them)."""
    wall = dict.fromkeys(detectors, float("inf"))
    cpu = dict.fromkeys(detectors, float("inf"))
    for _ in range(rounds):
        for name, detect in detectors.items():
            sync(device)
            t, c = time.perf_counter(), time.process_time()
            for image in images:
                detect(image)
            sync(device)
            wall[name] = min(wall[name], time.perf_counter() - t)
            cpu[name] = min(cpu[name], time.process_time() - c)
    return wall, cpu


def decode_options(rounds: int = 5) -> list[tuple[str, float, str]]:
    """ms per photo for each JPEG decode option, with the size it gives."""
    blobs = [p.read_bytes() for p in sorted((TESTDATA / "faces").glob("*.jpg"))]
    rows = []

    def full(data):
        image = Image.open(io.BytesIO(data))
        image.load()
        return image.convert("RGB")

    def drafted(data, divisor):
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (image.width // divisor, image.height // divisor))
        image.load()
        return image.convert("RGB")

    def to_1280(data):  # the detector's own input: at most 1280 px a side
        image = Image.open(io.BytesIO(data))
        scale = min(1.0, 1280 / max(image.size))
        image.draft("RGB", (int(image.width * scale), int(image.height * scale)))
        image.load()
        return image.convert("RGB")

    options = [("full decode", full), ("draft to >= 1280 px side (detector input)", to_1280)]
    options += [(f"draft 1/{d}", lambda data, d=d: drafted(data, d)) for d in (2, 4, 8)]
    for name, decode in options:
        best = float("inf")
        for _ in range(rounds):
            t = time.perf_counter()
            out = [decode(b) for b in blobs]
            best = min(best, time.perf_counter() - t)
        rows.append((name, best / len(blobs) * 1000, ", ".join(f"{o.width}x{o.height}" for o in out)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", default="1,all", help="comma-separated torch thread counts; 'all' = every core")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--half", action="store_true",
                        help="FastMTCNN's nets in float16 (CUDA only; not parity: boxes moved up to 7.7 px on an H200)")
    parser.add_argument("--sets", default="", help="comma-separated image sets to run (default: all)")
    args = parser.parse_args()
    device = pick_device(args.device)
    thresholds = DetectorConfig().thresholds
    from facenet_pytorch import MTCNN

    facenet = MTCNN(keep_all=True, device=device, min_face_size=MTCNN_MIN_FACE_SIZE, thresholds=list(thresholds),
                    post_process=False, select_largest=False)
    fast = FastMTCNN(device, min_face_size=MTCNN_MIN_FACE_SIZE, thresholds=thresholds, half=args.half)
    # Face counts through the pipeline's own filters (score, min_face_size), at the set's own size.
    yunet = FaceDetector(DetectorConfig(), device, max_side=100_000, detector="yunet")
    mtcnn_kept = FaceDetector(DetectorConfig(), device, max_side=100_000)
    wanted = args.sets.split(",") if args.sets else None
    sets = image_sets(wanted)
    cores = len(os.sched_getaffinity(0))
    threads = [cores if t == "all" else int(t) for t in args.threads.split(",")]

    # Arithmetic per image and whether both find the same faces (FastMTCNN's candidate counts).
    work, same, yunet_found = {}, {}, {}
    for name, images in sets.items():
        macs, agree, found = 0, 0, [0, 0]
        for image in images:
            boxes = fast.detect([image])[0][0]
            counts = fast.last_counts
            macs += pnet_macs(image.height, image.width) + counts["rnet_crops"] * RNET_MACS
            macs += counts["onet_crops"] * ONET_MACS
            reference = facenet.detect(image)[0]
            agree += (0 if reference is None else len(reference)) == len(boxes)
            found[0] += len(mtcnn_kept.detect([image])[0])
            found[1] += len(yunet.detect([image])[0])
        work[name], same[name] = 2 * macs / len(images), f"{agree}/{len(images)}"
        yunet_found[name] = f"{found[0]} / {found[1]}"

    print(f"device {device}{' (float16 nets)' if args.half and device.type == 'cuda' else ''}, "
          f"torch {torch.__version__}, {cores} core(s), best of {args.rounds} interleaved rounds\n")
    print("| threads | images | GFLOP/image | facenet-pytorch img/s | FastMTCNN img/s | ratio (wall) | "
          "ratio (CPU s) | share of peak (facenet / fast) | same face count | YuNet img/s | YuNet / facenet "
          "(wall) | faces found, MTCNN / YuNet |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    peaks = {}
    for n in threads:
        if device.type == "cpu":
            torch.set_num_threads(n)
        cv2.setNumThreads(n)
        peaks[n] = peak_flops(device)
        for name, images in sets.items():
            best, cpu = measure({"facenet": lambda im: facenet.detect(im, landmarks=True),
                                 "fast": lambda im: fast.detect([im]),
                                 "yunet": lambda im: yunet.detect([im])}, images, args.rounds, device)
            rate = {k: len(images) / v for k, v in best.items()}
            share = {k: work[name] * r / peaks[n] for k, r in rate.items()}
            print(f"| {n} | {name} | {work[name] / 1e9:.2f} | {rate['facenet']:.2f} | {rate['fast']:.2f} | "
                  f"**{best['facenet'] / best['fast']:.2f}** | {cpu['facenet'] / cpu['fast']:.2f} | "
                  f"{share['facenet']:.0%} / {share['fast']:.0%} | {same[name]} | {rate['yunet']:.2f} | "
                  f"**{best['facenet'] / best['yunet']:.2f}** | {yunet_found[name]} |")
    print()
    for n, peak in peaks.items():
        print(f"measured peak, {n} thread(s): {peak / 1e9:.0f} GFLOP/s (float32 2048x2048 matrix product)")
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}, utilisation at the end: {gpu_utilisation(device)}")
    print(f"\nJPEG decode (Pillow {Image.__version__}, libjpeg-turbo: {features.check_feature('libjpeg_turbo')}), "
          f"{torch.get_num_threads()} thread(s), best of 5:\n")
    print("| decode | ms per photo | sizes |")
    print("| --- | --- | --- |")
    for name, ms, sizes in decode_options():
        print(f"| {name} | {ms:.1f} | {sizes} |")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
