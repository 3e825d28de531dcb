"""PDQ of a scraped picture scaled to fit a side, against PDQ of the full picture (issue 20).

Hashing a 2-4 megapixel photo at full size costs about as much as finding its faces; Meta's own
C++ tool (pdq/cpp/io/pdqio.cpp) resizes anything larger than 512 px to 512x512 first. This
measures, on the five shared photos and every re-upload edit of each (tests.support.edits, face
boxes from the detector):

* how far each way of scaling moves the hash from the full picture's (only pictures larger than
  the side change);
* whether the copy still matches its source's reference hashes (the full picture's eight dihedral
  variants, within the match distance), and how close it comes to the other sources' references;
* the cost per picture.

    .venv/bin/python bench/pdq_scale.py [--side 1024]   (default: matching.scraped_pdq_max_side)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._cache import LFW, TESTDATA  # noqa: E402
from mimamori.core.config import load_settings  # noqa: E402
from mimamori.media.pdq import DEFAULT_MAX_DISTANCE, fitted, hamming, pdq_dihedral, pdq_hash  # noqa: E402
from tests.support import edits  # noqa: E402


def scalings(side: int) -> dict[str, Callable[[Image.Image], Image.Image]]:
    """Ways to get a picture down to ``side``: the pipeline's (area filter, aspect kept) and the C++ tool's."""
    def squashed(image: Image.Image, resample: Image.Resampling) -> Image.Image:
        return image if max(image.size) <= side else image.resize((side, side), resample)

    return {"full picture": lambda image: image,
            f"fit {side}, area filter (the pipeline's)": lambda image: fitted(image, side),
            f"{side}x{side}, nearest (as pdq-photo-hasher)": lambda image: squashed(image, Image.Resampling.NEAREST),
            f"{side}x{side}, area filter": lambda image: squashed(image, Image.Resampling.BOX)}


def pictures() -> list[tuple[int, str, Image.Image]]:
    """(source number, edit name, picture): each shared photo and every edit of it."""
    from mimamori.models.face_encoder import FaceEncoder

    encoder = FaceEncoder(load_settings("local"))
    photos = [Image.open(p).convert("RGB") for p in sorted((TESTDATA / "faces").glob("*.jpg"))]
    others = [Image.open(p).convert("RGB") for p in sorted(LFW.glob("*/*_0001.jpg"))[:3]]
    catalogue = edits.reupload_edits(others)
    found = []
    for number, photo in enumerate(photos):
        boxes = [tuple(d.box) for d in encoder.detect(photo)]
        found.append((number, "original", photo))
        found += [(number, edit.name, edit.apply(photo, boxes)) for edit in catalogue]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=load_settings("local").matching.scraped_pdq_max_side)
    args = parser.parse_args()
    items = pictures()
    sources = sorted({number for number, _, _ in items})
    references = {number: pdq_dihedral(image) for number, name, image in items if name == "original"}
    large = sum(max(image.size) > args.side for _, _, image in items)
    print(f"{len(items)} pictures ({len(sources)} shared photos and {len(items) // len(sources) - 1} edits of each), "
          f"{large} larger than {args.side} px; match distance {DEFAULT_MAX_DISTANCE}; references: the full "
          f"photos' eight dihedral hashes\n")
    print("| hashed from | bits from the full picture's hash (median / 90th pct / max, larger pictures) | "
          "copies matching their source | closest distance to another source's reference | ms per picture |")
    print("| --- | --- | --- | --- | --- |")
    full = {}
    for label, scale in scalings(args.side).items():
        distances, matched, closest, seconds = [], 0, 256, 0.0
        for i, (number, _name, image) in enumerate(items):
            began = time.perf_counter()
            hashed = pdq_hash(scale(image))
            seconds += time.perf_counter() - began
            if label == "full picture":
                full[i] = hashed
            elif max(image.size) > args.side:
                distances.append(hamming(hashed, full[i]))
            matched += min(hamming(hashed, r) for r in references[number]) <= DEFAULT_MAX_DISTANCE
            closest = min(closest, *(hamming(hashed, r) for other in sources if other != number
                                     for r in references[other]))
        spread = (f"{np.median(distances):.0f} / {np.percentile(distances, 90):.0f} / {max(distances)}"
                  if distances else "0 (itself)")
        print(f"| {label} | {spread} | {matched} of {len(items)} | {closest} | {seconds / len(items) * 1000:.1f} |")


if __name__ == "__main__":
    main()
