"""PDQ, Meta's 256-bit perceptual image hash, through ``pdqhash`` (Meta's reference C++ code).

PDQ is what StopNCII and Meta's Hasher-Matcher-Actioner (HMA) exchange: two pictures are the
same one when their hashes are within 31 bits (Hamming) of each other, HMA's default. Hashing
here follows the ``threatexchange`` library's PDQ signal (the one HMA runs): the decoded RGB
pixels at full resolution, no pre-scaling, into pdqhash's C++ hash (unless ``max_side`` is given,
below); so a hash computed by mimamori equals the one a partner's HMA computes for the same image,
and the hex text is ThreatExchange's (64 lowercase hex digits, the hash's most significant bit first).

Quality (0-100) says how much structure the image has: a flat or nearly blank image gets a
low score and a hash that matches many others, so matches are taken only above a floor.

The eight dihedral variants (rotations by 90°, 180°, 270° and four mirrors) of a reference
image are hashed in one pass: a mirrored or rotated re-upload matches one of them exactly.

Scraped media may be hashed from a copy scaled to fit ``max_side`` (``matching.scraped_pdq_max_side``,
1024 px by default, with an area filter), as Meta's own C++ tool scales (pdq/cpp/io/pdqio.cpp
resizes anything larger to 512x512 first: "the two-pass Jarosz filter is prohibitively expensive
for larger images"). At 1024 px that is about four times cheaper for a 2-4 megapixel photo and
moves the hash by about 4 bits of the 31 a match allows (docs/matching.md, "PDQ of scraped
pictures"). Reference hashes, which are exported and compared by partners, are always of the full
picture, as HMA computes them.

The single hash of a picture calls the C++ that ``pdqhash`` compiled through ``ctypes``
(``_gil_free_hasher``): pdqhash's own binding holds Python's global lock for the whole C++ call
(about 15 ms a 1-megapixel picture), and the pipeline's detection thread, beside it, stalls that
long each time it next needs the lock. ``ctypes`` lets the lock go for the call. It is the same
compiled function of the same pinned package, fed the same luma, so the same bits (tests); where
the symbol is not there (another pdqhash build) the binding's ``compute`` is used.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pdqhash
from PIL import Image

PDQ_BITS = 256
PDQ_BYTES = PDQ_BITS // 8
# HMA's default match distance and ThreatExchange's advice on quality (below 50: too flat to trust).
DEFAULT_MAX_DISTANCE = 31
DEFAULT_MIN_QUALITY = 50
# The order of pdqhash.compute_dihedral (and of the C++ pdq-photo-hasher's --pdqdih output).
DIHEDRAL = ("original", "rotate90", "rotate180", "rotate270", "flip_x", "flip_y", "flip_plus1", "flip_minus1")
_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class PdqHash:
    """A PDQ hash: 32 bytes in ThreatExchange's bit order (also a Milvus BINARY_VECTOR of dim 256)."""

    bits: bytes
    quality: int

    def __post_init__(self) -> None:
        if len(self.bits) != PDQ_BYTES:
            raise ValueError(f"a PDQ hash is {PDQ_BYTES} bytes, not {len(self.bits)}")
        if not 0 <= self.quality <= 100:
            raise ValueError(f"PDQ quality is 0 to 100, not {self.quality}")

    @property
    def hex(self) -> str:
        return to_hex(self.bits)

    @classmethod
    def from_hex(cls, text: str, quality: int) -> PdqHash:
        return cls(from_hex(text), quality)


def to_hex(bits: bytes) -> str:
    """ThreatExchange's PDQ text: 64 lowercase hex digits."""
    if len(bits) != PDQ_BYTES:
        raise ValueError(f"a PDQ hash is {PDQ_BYTES} bytes, not {len(bits)}")
    return bits.hex()


def from_hex(text: str) -> bytes:
    """The 32 bytes of a PDQ hex string (upper or lower case); a ValueError names what is wrong."""
    value = text.strip().lower()
    if not _HEX.match(value):
        raise ValueError(f"not a PDQ hash (64 hex digits): {text[:80]!r}")
    return bytes.fromhex(value)


def _pixels(image: Image.Image) -> np.ndarray:
    """The RGB pixels pdqhash reads (it takes luma 0.299 R + 0.587 G + 0.114 B, as the C++ does)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _packed(vector: np.ndarray) -> bytes:
    # pdqhash gives 256 bits, most significant first: packed big-endian they are the hex's bytes.
    return np.packbits(vector.astype(np.uint8)).tobytes()


def fitted(image: Image.Image, max_side: int) -> Image.Image:
    """The picture scaled down (area filter, aspect kept) to fit ``max_side``; as it is if it fits or 0."""
    if not max_side or max(image.size) <= max_side:
        return image
    if image.mode not in ("RGB", "L"):  # resampled in the colours pdqhash reads (a palette would not be)
        image = image.convert("RGB")
    scale = max_side / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BOX)


# pdqhash's compiled facebook::pdq::hashing::pdqHash256FromFloatLuma (its C++ name, mangled).
_HASH_FROM_LUMA = "_ZN8facebook3pdq7hashing23pdqHash256FromFloatLumaEPfS2_iiPA64_fS4_PA16_fRNS1_7Hash256ERi"
_FLOATS = ctypes.POINTER(ctypes.c_float)
_BIT = np.arange(PDQ_BITS)


def _gil_free_hasher() -> Callable[[np.ndarray], tuple[np.ndarray, int]] | None:
    """``pdqhash.compute`` with the global lock let go during the C++ call; None where the binding
    does not export the function."""
    try:
        function = getattr(ctypes.CDLL(pdqhash.bindings.__file__), _HASH_FROM_LUMA)
    except (AttributeError, OSError):
        return None
    function.argtypes = [_FLOATS, _FLOATS, ctypes.c_int, ctypes.c_int, _FLOATS, _FLOATS, _FLOATS,
                         ctypes.POINTER(ctypes.c_uint16), ctypes.POINTER(ctypes.c_int)]
    function.restype = None

    def compute(pixels: np.ndarray) -> tuple[np.ndarray, int]:
        # The luma exactly as pdqhash's binding computes it (float64 sums, then float32).
        luma = np.ascontiguousarray(
            (pixels[:, :, 0] * 0.299 + pixels[:, :, 1] * 0.587 + pixels[:, :, 2] * 0.114).astype("float32"))
        scratch = np.zeros_like(luma)
        buffers = [np.zeros(shape, np.float32) for shape in ((64, 64), (16, 64), (16, 16))]
        words, quality = (ctypes.c_uint16 * 16)(), ctypes.c_int()
        function(*(array.ctypes.data_as(_FLOATS) for array in (luma, scratch)), luma.shape[0], luma.shape[1],
                 *(array.ctypes.data_as(_FLOATS) for array in buffers), words, ctypes.byref(quality))
        # Hash256's sixteen 16-bit words to pdqhash's vector (bit k of the hash at index 255 - k).
        vector = (np.array(words, np.int64)[_BIT >> 4] >> (_BIT & 15)) & 1
        return vector[::-1], quality.value

    return compute


def _hasher() -> Callable[[np.ndarray], tuple[np.ndarray, int]]:
    return _gil_free_hasher() or pdqhash.compute


_compute = _hasher()


def pdq_hash(image: Image.Image, max_side: int = 0) -> PdqHash:
    """PDQ hash and quality of one image (or video frame); ``max_side``: hash a copy scaled to fit it."""
    vector, quality = _compute(_pixels(fitted(image, max_side)))
    return PdqHash(_packed(vector), int(quality))


def pdq_dihedral(image: Image.Image) -> list[PdqHash]:
    """The hashes of the image's eight dihedral variants, in ``DIHEDRAL`` order (one pass, one quality)."""
    vectors, quality = pdqhash.compute_dihedral(_pixels(image))
    return [PdqHash(_packed(vector), int(quality)) for vector in vectors]


def hamming(a: PdqHash | bytes, b: PdqHash | bytes) -> int:
    """Bits that differ between two PDQ hashes (0 to 256)."""
    x = a.bits if isinstance(a, PdqHash) else a
    y = b.bits if isinstance(b, PdqHash) else b
    if len(x) != PDQ_BYTES or len(y) != PDQ_BYTES:
        raise ValueError("PDQ hashes are 32 bytes each")
    return (int.from_bytes(x, "big") ^ int.from_bytes(y, "big")).bit_count()


def frame_hashes(frames: Iterable[tuple[int, Image.Image]], max_side: int = 0) -> list[tuple[int, PdqHash]]:
    """The PDQ hash of each (time in ms, frame) of a media item: an image's one, a video's sampled ones
    (vPDQ's idea, on the frames the decoder already samples: one per interval plus scene cuts)."""
    return [(int(time_ms), pdq_hash(image, max_side)) for time_ms, image in frames]
