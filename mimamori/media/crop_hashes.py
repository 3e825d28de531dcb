"""The crop-robust image signal: PDQ of square windows anchored on each detected face.

PDQ of the whole picture does not survive a tight crop, a paste into another picture or a
collage: the frame around the content changes, and with it every low frequency PDQ keeps.
What a re-upload keeps in all of those is the face and the picture around it, so the same
windows are cut around each face on both sides, at fixed multiples of the face's size and
centred on it, and hashed with PDQ: a window is defined by the face, not by the frame, so a
crop, a shrink or a paste leaves it (nearly) the same pixels. The reference side also hashes
each window's eight dihedral variants, so mirrored and quarter-turned re-uploads match.

Why these and not a grid of overlapping regions: bench/matching.py measured both
(docs/matching.md): the grid needs tens of regions per picture on both sides for the same
crops, costs ten times the hashes, and its regions of flat background match each other
across unrelated pictures.

Plain functions on PIL images and face boxes; the hashing itself is mimamori.media.pdq's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mimamori.media.pdq import PdqHash, pdq_dihedral, pdq_hash

Box = Sequence[float]  # x1, y1, x2, y2 in picture pixels

# Window sides as multiples of the face box's longer side. 1.5x holds the face and the hair
# and survives the tightest crops; 2.5x adds the shoulders and the nearest background, which
# tells apart two tight face windows of people who look alike.
MULTIPLES: tuple[float, ...] = (1.5, 2.5)
# A window that lies more than this share outside the picture is not hashed: its padding,
# not the picture, would decide the hash, and a crop of the same picture pads it otherwise.
MAX_OUTSIDE = 0.2
# Windows are resampled to this side before hashing: PDQ reduces to 64x64 anyway, and a
# fixed size makes the hash independent of the face's size in pixels.
WINDOW_SIDE = 128
# Faces whose box is smaller than this (pixels, longer side) give windows of mostly
# interpolation; they are skipped. Thumbnails down to 64 px keep LFW-sized faces above it.
MIN_FACE_SIDE = 12
# Below this PDQ quality (0-100) a window is mostly flat and matches flat windows of other
# pictures; Meta's reference code and HMA use the same cut-off for whole pictures.
MIN_QUALITY = 50
# Hamming distance (of 256 bits) at or under which two windows match. Above PDQ's 31 for
# whole pictures: a window is cut around a detected box, whose placement moves by a few pixels
# between two copies (the same copy's windows sit a median 34 bits from their source's), while
# windows of different pictures were never closer than 76 bits (bench/matching.py, 0 false
# matches in 494,978 pairs, docs/quality.md).
MATCH_DISTANCE = 48


@dataclass(frozen=True)
class Window:
    face: int  # which face of the picture (index into the boxes given)
    multiple: float
    box: tuple[int, int, int, int]  # in picture pixels, may reach outside the picture


def face_windows(size: tuple[int, int], faces: Sequence[Box], multiples: Sequence[float] = MULTIPLES,
                 max_outside: float = MAX_OUTSIDE, min_face_side: float = MIN_FACE_SIDE) -> list[Window]:
    """The square windows around each face: centred on its box, ``multiple`` times its longer side."""
    width, height = size
    windows = []
    for index, (x1, y1, x2, y2) in enumerate(faces):
        side = max(x2 - x1, y2 - y1)
        if side < min_face_side:
            continue
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        for multiple in multiples:
            half = side * multiple / 2
            box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
            inside_w = max(0, min(width, box[2]) - max(0, box[0]))
            inside_h = max(0, min(height, box[3]) - max(0, box[1]))
            area = (box[2] - box[0]) * (box[3] - box[1])
            if area <= 0 or 1 - inside_w * inside_h / area > max_outside:
                continue
            windows.append(Window(index, multiple, box))
    return windows


def cut(image: Image.Image, window: Window, side: int = WINDOW_SIDE) -> np.ndarray:
    """The window's pixels (black outside the picture), resampled to ``side`` x ``side`` RGB."""
    region = image.crop(window.box)  # Pillow fills outside the picture with black
    return np.asarray(region.convert("RGB").resize((side, side), Image.Resampling.BILINEAR))


@dataclass(frozen=True)
class WindowHash:
    window: Window
    hashes: tuple[PdqHash, ...]  # one for a scraped picture; eight (pdq.DIHEDRAL order) for a reference


def window_hashes(image: Image.Image, faces: Sequence[Box], reference: bool) -> list[WindowHash]:
    """PDQ of each face window with enough structure; a reference's in all eight dihedral variants."""
    found = []
    for window in face_windows(image.size, faces):
        pixels = Image.fromarray(cut(image, window))
        hashes = tuple(pdq_dihedral(pixels)) if reference else (pdq_hash(pixels),)
        if hashes[0].quality >= MIN_QUALITY:
            found.append(WindowHash(window, hashes))
    return found


# A row or column of the picture's edge is border when every pixel in it lies within this
# (0-255, per channel) of the edge's colour: letterbox bars, a frame, a screenshot's black.
BORDER_TOLERANCE = 12
# At least this share of the picture must be left after trimming, or nothing is trimmed
# (a picture that is mostly one colour is not a bordered picture).
MIN_TRIMMED_SHARE = 0.2


def trim_border(image: Image.Image, tolerance: int = BORDER_TOLERANCE) -> Image.Image | None:
    """The picture without the uniform bands around it, or None when there are none to trim.

    A border or a screenshot's bars change every low frequency of the whole picture, so its
    PDQ no longer matches the original's; the trimmed picture's does (docs/matching.md).
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    height, width = pixels.shape[:2]

    def uniform(line: np.ndarray, colour: np.ndarray) -> bool:
        return bool((np.abs(line - colour) <= tolerance).all())

    top, bottom, left, right = 0, height, 0, width
    while top < bottom - 1 and uniform(pixels[top, left:right], pixels[0, 0]):
        top += 1
    while bottom - 1 > top and uniform(pixels[bottom - 1, left:right], pixels[height - 1, width - 1]):
        bottom -= 1
    while left < right - 1 and uniform(pixels[top:bottom, left], pixels[0, 0]):
        left += 1
    while right - 1 > left and uniform(pixels[top:bottom, right - 1], pixels[height - 1, width - 1]):
        right -= 1
    if (top, bottom, left, right) == (0, height, 0, width):
        return None
    if (bottom - top) * (right - left) < MIN_TRIMMED_SHARE * height * width:
        return None
    return image.crop((left, top, right, bottom))
