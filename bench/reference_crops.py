"""Would PDQ of a reference's sub-rectangles catch crops of it? (issue 20: an idea, measured)

    .venv/bin/python bench/reference_crops.py [--photos 24] [--crops 6]

docs/quality.md named "reference-side crops" as what might close the crop family: hash a grid
of sub-rectangles of every reference picture, and search the copy's whole-picture PDQ against
them. This measures it before anything is built. For each photo (every 53rd LFW photo and the
five shared portraits) it hashes a grid of squares-in-proportion (side fractions ``--scales``,
offsets every ``--step`` of the side), then cuts ``--crops`` random crops of the photo that are
*not* on the grid (side 0.5-0.9, aspect within 10%, anywhere) and reports how many come within
31 bits (HMA's default) and 40 bits of the nearest grid hash of their own photo, and the nearest
grid hash of another photo (the false-match margin). A random crop is what a re-upload is; the
bench's own centred crops would sit on the grid and say nothing.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mimamori.media.pdq import hamming, pdq_hash  # noqa: E402

TESTDATA = ROOT.parent / "shared" / "testdata"
Rect = tuple[float, float, float, float]


def grid(scales: list[float], step: float) -> list[Rect]:
    rects = []
    for side in scales:
        n = round((1 - side) / step)
        offsets = [i * (1 - side) / n for i in range(n + 1)] if n else [0.0]
        rects += [(x, y, x + side, y + side) for x in offsets for y in offsets]
    return rects


def cut(image: Image.Image, rect: Rect) -> Image.Image:
    w, h = image.size
    return image.crop((round(rect[0] * w), round(rect[1] * h), round(rect[2] * w), round(rect[3] * h)))


def random_crop(rng: random.Random) -> Rect:
    side = rng.uniform(0.5, 0.9)
    tall = min(1.0, side * rng.uniform(0.9, 1.1))
    x, y = rng.uniform(0, 1 - side), rng.uniform(0, 1 - tall)
    return (x, y, x + side, y + tall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=24, help="LFW photos (every 53rd), besides the five portraits")
    parser.add_argument("--crops", type=int, default=6, help="random crops per photo")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9])
    parser.add_argument("--step", type=float, default=0.05)
    args = parser.parse_args()
    paths = sorted((TESTDATA / "lfw").glob("*/*.jpg"))[::53][: args.photos] + sorted((TESTDATA / "faces").glob("*.jpg"))
    rects = grid(args.scales, args.step)
    photos = {path: Image.open(path).convert("RGB") for path in paths}
    hashes = {path: [pdq_hash(cut(photo, rect)) for rect in rects] for path, photo in photos.items()}
    rng = random.Random(7)
    own, other = [], []
    for path, photo in photos.items():
        for _ in range(args.crops):
            copy = pdq_hash(cut(photo, random_crop(rng)))
            if copy.quality < 50:
                continue
            own.append(min(hamming(copy, h) for h in hashes[path]))
            stranger = rng.choice([p for p in paths if p != path])
            other.append(min(hamming(copy, h) for h in hashes[stranger]))
    own_d, other_d = np.array(own), np.array(other)
    print(f"{len(paths)} photos x {len(rects)} grid hashes; {len(own_d)} random crops of quality >= 50")
    print(f"within 31 bits of their own photo's grid: {(own_d <= 31).mean():.3f}; "
          f"within 40: {(own_d <= 40).mean():.3f}; median nearest {np.median(own_d):.0f} bits")
    print(f"nearest grid hash of another photo: min {other_d.min()} bits, median {np.median(other_d):.0f}")


if __name__ == "__main__":
    main()
