"""The perceptual hash (pHash, 64 bits) that near-duplicate dedupe compares by Hamming distance."""

from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image


def perceptual_hash(image: Image.Image) -> bytes:
    """pHash of a frame, as the 8 bytes of a Milvus binary vector."""
    bits = imagehash.phash(image).hash.flatten()
    return np.packbits(bits.astype(np.uint8)).tobytes()
