"""Local features with geometric verification: the image signal that survives crops and face mosaics.

PDQ keeps a picture's low frequencies, so a crop, a paste into another frame or a mosaic over
a close portrait's face moves it past its threshold; the face path needs a face the detector
still finds. What such a re-upload keeps is most of the picture's small structures, in the same
places relative to each other. So both sides are described by ORB keypoints (OpenCV: corners
with a 256-bit binary descriptor each, invariant to rotation and scale), a copy's descriptors
are matched to the references' (the nearest, kept when it is clearly nearer than any rival:
Lowe's ratio test; and when the reference's descriptor has it as its own nearest: a
cross-check), and each reference with enough matches is verified by fitting one similarity
transform (rotation, scale, translation) with RANSAC. The score is the number of matches that
transform explains: chance matches of unrelated pictures do not line up, a re-upload's do. They
must also spread over a little of the reference (MIN_SPREAD), not sit in one tight cluster. The
reference side is described mirrored too, since ORB is not mirror-invariant.

What it cannot tell apart (bench/local_features.py): a reference that itself carries text or a
logo (meme captions, a caption across the picture, a site's watermark) lines up with unrelated
pictures carrying the same overlay, since ORB's keypoints gather on glyphs. Clean references do
not. So the decision uses it only where ``matching.local_features`` is on (docs/matching.md).

Why ORB and not SIFT or a learned descriptor: binary descriptors compare by popcount (the same
kind of index as PDQ's) and cost milliseconds to extract on a CPU.

Plain functions on PIL images; ``FeatureGallery`` is an in-memory exact index of reference
features (faiss's exact binary index). Its cost grows with the references (about 55 ms a copy
against 158 reference pictures and their mirrors on this 2-core machine); an approximate index would serve
the same kind of nearest-neighbour lists to ``verified_scores`` for larger galleries.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

# Features are taken from the picture scaled down to at most this side: detail finer than
# that is what re-encoding and resizing destroy first, and the cost grows with the area.
MAX_SIDE = 640
# Keypoints per picture (ORB keeps the strongest by its Harris score).
FEATURES = 500
# An ORB descriptor: 256 bits.
DESCRIPTOR_BYTES = 32
# A match is kept when its distance is below this share of the nearest other reference's.
RATIO = 0.8
# A reference needs this many kept matches before RANSAC is tried: fewer cannot outvote chance.
LEAST_MATCHES = 6
# RANSAC's reprojection tolerance, in pixels of the scaled pictures.
REPROJECTION = 4.0
# The inliers must spread over at least this share of the reference picture (the area of their
# bounding box), so a tight cluster (a logo, a small watermark) is not a match on its own. Chosen
# on held-out LFW people (bench/matching.py's --fit-people): at 0.1 and 0.05 it lost crops of 50%
# and of a 40% corner, at 0.02 none, with no match of another person's picture at any value.
MIN_SPREAD = 0.02


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoints of one picture: positions (n, 2) in the scaled picture's pixels, descriptors (n, 32),
    and the scaled picture's (width, height)."""

    points: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return len(self.descriptors)


def _cv2():
    import cv2  # opencv-python-headless; imported here so the rest of mimamori.media does not need it

    return cv2


def extract(image: Image.Image, features: int = FEATURES, max_side: int = MAX_SIDE) -> LocalFeatures:
    """ORB keypoints of a picture; a flat or tiny picture may have none."""
    cv2 = _cv2()
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BILINEAR)
    keypoints, descriptors = cv2.ORB_create(nfeatures=features).detectAndCompute(np.asarray(image.convert("L")),
                                                                                 None)
    if descriptors is None:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_BYTES), np.uint8), image.size)
    return LocalFeatures(np.float32([k.pt for k in keypoints]).reshape(-1, 2), descriptors, image.size)


def extract_reference(image: Image.Image, features: int = FEATURES) -> list[LocalFeatures]:
    """A reference's features: the picture and its mirror (quarter turns need nothing: ORB is rotation-invariant)."""
    return [extract(image, features), extract(ImageOps.mirror(image), features)]


def inlier_mask(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Which matched point pairs one similarity transform explains (RANSAC); none if no transform fits."""
    if len(query) < 3:
        return np.zeros(len(query), bool)
    _, mask = _cv2().estimateAffinePartial2D(query, reference, method=_cv2().RANSAC,
                                              ransacReprojThreshold=REPROJECTION)
    return mask.ravel().astype(bool) if mask is not None else np.zeros(len(query), bool)


def spread(points: np.ndarray, size: tuple[int, int]) -> float:
    """The area of the bounding box of ``points`` as a share of the picture's (0 if flat)."""
    area = float(size[0] * size[1])
    if len(points) < 2 or area <= 0:
        return 0.0
    return float(np.prod(np.ptp(points, axis=0))) / area


def to_bytes(variants: Sequence[LocalFeatures]) -> bytes:
    """Features of a picture's variants (its original, its mirror) as one .npz file, without pickles."""
    arrays = {}
    for i, found in enumerate(variants):
        arrays[f"points{i}"], arrays[f"descriptors{i}"] = found.points, found.descriptors
        arrays[f"size{i}"] = np.int32(found.size)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def from_bytes(data: bytes) -> list[LocalFeatures]:
    """What ``to_bytes`` wrote; anything else (another shape, a damaged or truncated file) raises ValueError."""
    try:
        return _read_arrays(data)
    except ValueError:
        raise
    except Exception as error:  # zipfile, zlib, EOF, a bare .npy: all the same damaged file
        raise ValueError(f"not a local-features file: {error!r}") from error


def _read_arrays(data: bytes) -> list[LocalFeatures]:
    loaded = np.load(io.BytesIO(data), allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError("not an .npz file")
    with loaded as arrays:
        count = len(arrays.files) // 3
        found = []
        for i in range(count):
            points, descriptors, size = arrays[f"points{i}"], arrays[f"descriptors{i}"], arrays[f"size{i}"]
            if (points.ndim != 2 or points.shape[1] != 2 or descriptors.shape != (len(points), DESCRIPTOR_BYTES)
                    or descriptors.dtype != np.uint8 or size.shape != (2,)):
                raise ValueError(f"local features {i}: points {points.shape}, descriptors {descriptors.shape}")
            found.append(LocalFeatures(points.astype(np.float32), descriptors, (int(size[0]), int(size[1]))))
    return found


Neighbour = tuple[int, int, float]  # (reference set, descriptor index in it, Hamming distance)


def ratio_matches(neighbours: Iterable[Sequence[Neighbour]], owners: Sequence[int], ratio: float = RATIO
                  ) -> dict[int, list[tuple[int, int]]]:
    """Per reference set, the (query, reference) descriptor pairs that pass the ratio test.

    ``neighbours``: for each query descriptor, its nearest reference descriptors, nearest first.
    The rival is the next one in the same set or of another owner; the other sets of the same
    owner (a reference's mirror) are skipped, so a symmetric picture does not fail its own test,
    while a descriptor as near to two places of one picture (repeated texture) does: those are
    what chance inliers are made of (bench: the highest count of a copy against another person's
    picture fell from 11 to 6 with the same recall). A query with no rival keeps its nearest.
    """
    kept: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for query, near in enumerate(neighbours):
        if not near:
            continue
        first = near[0]
        rival = next((n for n in near[1:] if n[0] == first[0] or owners[n[0]] != owners[first[0]]), None)
        if rival is None or first[2] < ratio * rival[2]:
            kept[first[0]].append((query, first[1]))
    return kept


def mutual(query: LocalFeatures, reference: LocalFeatures, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The pairs whose reference descriptor has the query descriptor as its own nearest (a cross-check).

    The gallery-wide ratio test gets weaker as the gallery gets smaller (fewer rivals); the
    cross-check does not depend on it (bench: with 20 references the highest count of an original
    against another person's picture fell from 8 to 2, at the same recall).
    """
    if not pairs:
        return []
    cv2 = _cv2()
    # Only the paired reference descriptors need their nearest (exact search: the same answer as
    # matching the whole set, at a fraction of the cost).
    asked = sorted({t for _q, t in pairs})
    found = cv2.BFMatcher(cv2.NORM_HAMMING).match(reference.descriptors[asked], query.descriptors)
    back = {asked[m.queryIdx]: m.trainIdx for m in found}
    return [(q, t) for q, t in pairs if back.get(t) == q]


def verified_scores(query: LocalFeatures, sets: Sequence[LocalFeatures], owners: Sequence[int],
                    neighbours: Iterable[Sequence[Neighbour]]) -> dict[int, int]:
    """Owner -> inlier count of its best-verified set, for owners with at least LEAST_MATCHES matches
    that pass the ratio test and the cross-check."""
    best: dict[int, int] = {}
    for ref, pairs in ratio_matches(neighbours, owners).items():
        if len(pairs) < LEAST_MATCHES:
            continue
        pairs = mutual(query, sets[ref], pairs)
        if len(pairs) < LEAST_MATCHES:
            continue
        matched = sets[ref].points[[t for _, t in pairs]]
        mask = inlier_mask(query.points[[q for q, _ in pairs]], matched)
        count = int(mask.sum()) if spread(matched[mask], sets[ref].size) >= MIN_SPREAD else 0
        owner = owners[ref]
        best[owner] = max(best.get(owner, 0), count)
    return best


class FeatureGallery:
    """Reference features in one exact Hamming index; ``scores`` verifies a copy against all of them.

    The index is faiss's ``IndexBinaryFlat`` over every set's descriptors in one matrix: the same
    nearest distances as OpenCV's brute-force matcher at about a fifth of its time (the same scores
    for 340 queries against 316 LFW reference sets: docs/matching.md, "Local features").
    Neighbours at equal distance are taken in the order the sets were added, so a score never
    depends on the index's own tie order.
    """

    def __init__(self, neighbours: int = 4):
        self.sets: list[LocalFeatures] = []
        self.owners: list[int] = []
        self.k = neighbours
        self._index = None
        self._starts = np.zeros(1, np.int64)  # the row of each set's first descriptor in the index

    def add(self, owner: int, features: Iterable[LocalFeatures]) -> None:
        for found in features:
            if len(found):
                self.sets.append(found)
                self.owners.append(owner)
        self._index = None

    def neighbours(self, descriptors: np.ndarray, k: int) -> list[list[Neighbour]]:
        """For each descriptor, its ``k`` nearest reference descriptors, nearest first (ties: in the
        order they were added)."""
        import faiss  # faiss-cpu; imported here, as cv2 is, so the rest of mimamori.media does not need it

        # One thread: faiss's OpenMP team spins while it waits, and beside the pipeline's other
        # threads on a small box a picture's scoring took about twice the CPU on two threads as on
        # one (107-124 ms against 55-58 ms, docs/benchmarks.md). The pipeline's parallelism is its
        # stages' threads. The setting is per calling thread in OpenMP, so it is made here, in the
        # thread that searches.
        faiss.omp_set_num_threads(1)
        if self._index is None:
            self._index = faiss.IndexBinaryFlat(8 * DESCRIPTOR_BYTES)
            self._index.add(np.ascontiguousarray(np.concatenate([s.descriptors for s in self.sets])))
            self._starts = np.cumsum([0] + [len(s) for s in self.sets])
        distances, rows = self._index.search(np.ascontiguousarray(descriptors), min(k, self._index.ntotal))
        order = np.lexsort((rows, distances), axis=1)  # by distance, then by row: a deterministic tie order
        distances, rows = np.take_along_axis(distances, order, 1), np.take_along_axis(rows, order, 1)
        sets = np.searchsorted(self._starts, rows, side="right") - 1
        within = rows - self._starts[sets]
        return [list(zip(s.tolist(), w.tolist(), d.astype(float).tolist(), strict=True))
                for s, w, d in zip(sets, within, distances, strict=True)]

    def scores(self, query: LocalFeatures, skip: int | None = None) -> dict[int, int]:
        """Owner -> inliers of the copy against that reference (owners below LEAST_MATCHES left out).

        ``skip``: an owner to leave out of the index for this query (a reference scored against
        the others).
        """
        if len(query) < 2 or not self.sets:
            return {}
        near = [[n for n in found if self.owners[n[0]] != skip]
                for found in self.neighbours(query.descriptors, self.k + (2 if skip is not None else 0))]
        return verified_scores(query, self.sets, self.owners, near)
