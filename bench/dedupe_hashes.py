"""pHash (64 bits, today's near-duplicate dedupe) against PDQ (256 bits) on the edits dedupe must catch.

Dedupe turns re-encoded and resized copies into sightings and must never merge two different
pictures. For each hash: the distance of every photo to its JPEG-50 and its half-size copy (as a
share of the hash's bits), and the smallest distance between two different photos; the margin
between the two is what a near-duplicate threshold stands in. Run:

    .venv/bin/python bench/dedupe_hashes.py [--photos 300]
"""

from __future__ import annotations

import argparse
import io
import itertools
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mimamori.media.pdq import hamming, pdq_hash
from mimamori.media.phash import perceptual_hash

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def bits(a: bytes, b: bytes) -> int:
    return hamming(a, b) if len(a) == 32 else (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=300)
    args = parser.parse_args()
    paths = sorted((TESTDATA / "lfw").glob("*/*.jpg"))[:: max(1, 1580 // args.photos)][: args.photos]
    images = [Image.open(p).convert("RGB") for p in paths]
    hashers = {"phash": (perceptual_hash, 64), "pdq": (lambda im: pdq_hash(im).bits, 256)}
    for name, (hasher, size) in hashers.items():
        began = time.perf_counter()
        plain = [hasher(im) for im in images]
        seconds = (time.perf_counter() - began) / len(images)
        copies = {"jpeg_q50": [hasher(jpeg(im, 50)) for im in images],
                  "resize_0.5": [hasher(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS))
                                 for im in images]}
        same = {edit: np.array([bits(a, b) for a, b in zip(plain, hashed, strict=True)])
                for edit, hashed in copies.items()}
        others = np.array([bits(a, b) for a, b in itertools.combinations(plain, 2)])
        worst_copy = max(int(d.max()) for d in same.values())
        print(f"{name}: {len(images)} photos, {seconds * 1000:.1f} ms a photo (250x250)")
        for edit, distances in same.items():
            print(f"  {edit}: median {np.median(distances):.0f} bits, max {distances.max()} "
                  f"({distances.max() / size:.1%} of {size})")
        print(f"  different photos: {len(others)} pairs, min {others.min()} bits ({others.min() / size:.1%}), "
              f"1st percentile {np.percentile(others, 1):.0f}; pairs at or under the worst copy's {worst_copy}: "
              f"{int((others <= worst_copy).sum())}")


if __name__ == "__main__":
    main()
