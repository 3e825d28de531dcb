"""Local features with geometric verification as the crop-robust signal (issue 20): measured first.

    .venv/bin/python bench/local_features.py [--lfw-people 60] [--sources 6] [--features 500]

The issue's third option for crops and composites. ORB keypoints (OpenCV; rotation-invariant,
binary descriptors, so a Hamming index like PDQ's) of every reference, mirrored too; a copy's
descriptors are matched against all references at once (nearest two, Lowe's ratio test across
the whole gallery), and each reference with enough matches is verified by RANSAC with a
similarity transform (rotation, scale, translation). The score is the inlier count.

Thresholds are fitted on the references alone, two of them: the smallest inlier count that no
reference reaches against a picture of *another person*, and the one no reference reaches against
*another photo of the same person* (LFW holds near-identical press photos of one event), each
plus ``--margin``. Recall and false matches are then measured on edited copies, which the
thresholds never saw: copies of the five shared photos and of the first photo of ``--sources``
LFW people, every edit family of ``tests/support/edits.reupload_edits``, against every
reference; a copy that matches another photo of its own person is counted apart (not a
re-upload of that photo, though a picture of the same client).

Needs ``opencv-python-headless`` (Apache-2.0; not a mimamori dependency until this signal is
built): ``.venv/bin/pip install opencv-python-headless``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._cache import LFW, TESTDATA, lfw_files  # noqa: E402
from bench.matching import backdrops  # noqa: E402
from tests.support import edits  # noqa: E402

MAX_SIDE = 640  # features of a picture scaled to at most this side


def grey(image: Image.Image) -> np.ndarray:
    scale = min(1.0, MAX_SIDE / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    return np.asarray(image.convert("L"))


def features(orb, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) keypoint positions and (N, 32) descriptors; N may be 0."""
    keypoints, descriptors = orb.detectAndCompute(grey(image), None)
    if descriptors is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    return np.float32([k.pt for k in keypoints]), descriptors


class Gallery:
    """Every reference's descriptors (and its mirror's) in one matcher; matches grouped by reference."""

    def __init__(self, cv2, references: list[tuple[np.ndarray, np.ndarray]], owners: list[int]):
        self.cv2, self.owners = cv2, owners
        self.points = [p for p, _ in references]
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        self.matcher.add([d for _, d in references])
        self.matcher.train()

    def scores(self, points: np.ndarray, descriptors: np.ndarray, skip: int | None = None,
               ratio: float = 0.8, least: int = 6) -> dict[int, int]:
        """Inliers per reference (owner) with at least ``least`` ratio-test matches; ``skip``: an owner left out."""
        if len(descriptors) < 2:
            return {}
        groups: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for pair in self.matcher.knnMatch(descriptors, k=3):
            pair = [m for m in pair if self.owners[m.imgIdx] != skip]
            if len(pair) >= 2 and pair[0].distance < ratio * pair[1].distance:
                groups[pair[0].imgIdx].append((pair[0].queryIdx, pair[0].trainIdx))
        best: dict[int, int] = {}
        for image, pairs in groups.items():
            if len(pairs) < least:
                continue
            src = points[[q for q, _ in pairs]]
            dst = self.points[image][[t for _, t in pairs]]
            _, inliers = self.cv2.estimateAffinePartial2D(src, dst, method=self.cv2.RANSAC,
                                                          ransacReprojThreshold=4.0)
            count = int(inliers.sum()) if inliers is not None else 0
            owner = self.owners[image]
            best[owner] = max(best.get(owner, 0), count)
        return best


def load(args) -> tuple[list[tuple[str, str, Image.Image]], list[int]]:
    """References (name, person, picture) and the indexes of the sources among them."""
    shared = sorted((TESTDATA / "faces").glob("*.jpg"))
    pictures = [(f"faces/{p.name}", p.stem, Image.open(p).convert("RGB")) for p in shared]
    people: dict[str, list[str]] = defaultdict(list)
    for name in lfw_files():
        people[name.split("/", 1)[0]].append(name)
    chosen = sorted(people)[: args.lfw_people]
    for person in chosen:
        pictures += [(f"lfw/{n}", person, Image.open(LFW / n).convert("RGB")) for n in people[person]]
    step = max(1, len(chosen) // max(1, args.sources))
    edited = chosen[::step][: args.sources]
    first = [next(i for i, p in enumerate(pictures) if p[1] == person) for person in edited]
    return pictures, [*range(len(shared)), *first]


def fit_thresholds(gallery: Gallery, refs, persons: list[str], margin: int) -> dict[str, tuple[int, int]]:
    """Per kind of pair of originals (other people; the same person's other photos): the highest inlier
    count seen, and the threshold above it (highest + 1 + margin)."""
    highest = {"other people": 0, "same person": 0}
    for i, (points, descriptors) in enumerate(refs):
        for owner, count in gallery.scores(points, descriptors, skip=i).items():
            kind = "same person" if persons[owner] == persons[i] else "other people"
            highest[kind] = max(highest[kind], count)
    return {kind: (top + 1 + margin, top) for kind, top in highest.items()}


def main() -> None:
    import cv2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw-people", type=int, default=60, help="LFW people whose photos are references")
    parser.add_argument("--sources", type=int, default=6, help="LFW people whose first photo is edited")
    parser.add_argument("--features", type=int, default=500, help="ORB keypoints per picture")
    parser.add_argument("--margin", type=int, default=2, help="added to the highest inlier count between originals")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    orb = cv2.ORB_create(nfeatures=args.features)
    began = time.perf_counter()
    pictures, sources = load(args)
    refs = [features(orb, image) for _, _, image in pictures]
    mirrored = [features(orb, ImageOps.mirror(image)) for _, _, image in pictures]
    gallery = Gallery(cv2, refs + mirrored, list(range(len(refs))) * 2)
    persons = [person for _, person, _ in pictures]
    fitted = fit_thresholds(gallery, refs, persons, args.margin)
    print(f"{len(refs)} references ({time.perf_counter() - began:.0f} s), {len(refs) * (len(refs) - 1):,} ordered "
          "pairs of originals; highest inlier count between different pictures: "
          + ", ".join(f"{kind} {top} (threshold {t})" for kind, (t, top) in fitted.items()), flush=True)
    compare(cv2, orb, gallery, pictures, sources, {kind: t for kind, (t, _) in fitted.items()})
    print(f"done in {time.perf_counter() - began:.0f} s")


def compare(cv2, orb, gallery: Gallery, pictures, sources: list[int], thresholds: dict[str, int]) -> None:
    from mimamori.core.config import load_settings
    from mimamori.models.detector import FaceDetector
    from mimamori.models.devices import pick_device

    detector = FaceDetector(load_settings("local").models.detector, pick_device("cpu"))
    catalogue = edits.reupload_edits(backdrops())
    scores: dict[str, list[int]] = defaultdict(list)  # family -> inliers with the copy's own source
    strangers: dict[str, list[int]] = {"other people": [], "same person": []}  # highest per copy
    pairs = {"other people": 0, "same person": 0}
    for source in sources:
        person, image = pictures[source][1], pictures[source][2]
        boxes = [d.box for d in detector.detect([image])[0]]
        same = sum(1 for p in pictures if p[1] == person) - 1
        pairs["same person"] += same * len(catalogue)
        pairs["other people"] += (len(pictures) - 1 - same) * len(catalogue)
        for edit in catalogue:
            found = gallery.scores(*features(orb, edit.apply(image, boxes)))
            scores[edit.family].append(found.get(source, 0))
            for kind in strangers:
                wanted = kind == "same person"
                others = [n for o, n in found.items() if o != source and (pictures[o][1] == person) == wanted]
                strangers[kind].append(max(others, default=0))
    print("| family | copies | " + " | ".join(f"recall at {t} ({kind})" for kind, t in thresholds.items()) + " |")
    print("| --- | --- |" + " --- |" * len(thresholds))
    for family, got in scores.items():
        cells = " | ".join(f"{sum(n >= t for n in got) / len(got):.3f}" for t in thresholds.values())
        print(f"| {family} | {len(got)} | {cells} |")
    every = [n for got in scores.values() for n in got]
    print("all | " + str(len(every)) + " | " + " | ".join(f"{sum(n >= t for n in every) / len(every):.3f}"
                                                      for t in thresholds.values()))
    for kind, highest in strangers.items():
        for name, t in thresholds.items():
            print(f"copies matching a picture of {kind} at {t} ({name}): {sum(n >= t for n in highest)} "
                  f"of {len(highest)} copies ({pairs[kind]:,} pairs); highest {max(highest, default=0)}")


if __name__ == "__main__":
    main()
