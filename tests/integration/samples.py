"""Inputs for the pipeline tests: the shared photos, edited re-uploads, and bad media of every kind."""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.support import edits


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height and holds (almost) no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))


def png_bomb(side: int = 12000) -> bytes:
    """A real, complete greyscale PNG of side x side black pixels: a few hundred kB on disk."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@dataclass
class Sample:
    name: str
    data: bytes | None  # None: no object is stored (a missing key)
    content_type: str
    expect: str  # "faces:N", "sighting:exact", "sighting:near", "indexed" or "dlq:<reason>"
    raw_event: bytes | None = None  # publish this instead of a well-formed event
    sha256_override: str | None = None


def photos(testdata: Path) -> dict[str, Image.Image]:
    return {p.stem: Image.open(p).convert("RGB") for p in sorted((testdata / "faces").glob("*.jpg"))}


def good_samples(testdata: Path) -> list[Sample]:
    samples = []
    for path in sorted((testdata / "faces").glob("*.jpg")):
        faces = 6 if path.stem == "multiface" else 1
        samples.append(Sample(path.stem, path.read_bytes(), "image/jpeg", f"faces:{faces}"))
    samples.append(Sample("video", (testdata / "video" / "video.mp4").read_bytes(), "video/mp4", "indexed"))
    # A phone clip stored sideways with a 90-degree display matrix: indexed upright, or not at all.
    samples.append(Sample("phone_video", (testdata / "video" / "new_face_video-90.mp4").read_bytes(), "video/mp4",
                          "indexed"))
    return samples


def reupload_samples(testdata: Path) -> list[Sample]:
    """Exact copies, near copies (re-encoded, resized) and edits that make new media."""
    images = photos(testdata)
    paul, kate, group = images["paul_rudd"], images["kate_siegel"], images["multiface"]
    return [
        Sample("paul_exact", (testdata / "faces" / "paul_rudd.jpg").read_bytes(), "image/jpeg", "sighting:exact"),
        Sample("group_exact", (testdata / "faces" / "multiface.jpg").read_bytes(), "image/jpeg", "sighting:exact"),
        Sample("paul_reencoded", encode(edits.reencode(paul, 60), "JPEG", quality=95), "image/jpeg", "sighting:near"),
        Sample("kate_resized", encode(edits.resize(kate, 0.5), "JPEG", quality=92), "image/jpeg", "sighting:near"),
        Sample("kate_cropped", encode(edits.crop(kate, 0.2), "JPEG"), "image/jpeg", "faces:1"),
        Sample("paul_mirrored", encode(edits.mirror(paul), "JPEG"), "image/jpeg", "faces:1"),
        Sample("group_border", encode(edits.border(group), "PNG"), "image/png", "faces:6"),
    ]


def hard_but_valid_samples(testdata: Path) -> list[Sample]:
    """Unusual encodings that must decode correctly, not be rejected.

    Each is cropped differently first: an exact or resized copy would (rightly) be taken
    for a near duplicate of its source photo and not be decoded further.
    """
    images = photos(testdata)
    shea, angelina = images["shea_whigham"], images["angelina_jolie"]
    frames = [edits.crop(images[n], 0.1).resize((400, 480)) for n in ("paul_rudd", "kate_siegel")]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=500, loop=0)
    alpha = edits.resize(edits.crop(angelina, 0.15), 0.5).convert("RGBA")
    alpha.putalpha(Image.new("L", alpha.size, 200))
    grey = edits.resize(edits.crop(shea, 0.25), 0.5).convert("L")
    grey16 = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)
    return [
        Sample("animated_gif", gif.getvalue(), "image/gif", "indexed"),
        Sample("cmyk_jpeg", encode(edits.resize(edits.crop(shea, 0.15), 0.5).convert("CMYK"), "JPEG"), "image/jpeg",
               "faces:1"),
        Sample("png_alpha", encode(alpha, "PNG"), "image/png", "faces:1"),
        Sample("png_16bit", encode(grey16, "PNG"), "image/png", "faces:1"),
        Sample("webp", encode(edits.resize(edits.crop(angelina, 0.3), 0.5), "WEBP", quality=80), "image/webp",
               "faces:1"),
    ]


def bad_samples(testdata: Path, max_media_bytes: int) -> list[Sample]:
    portrait = (testdata / "faces" / "paul_rudd.jpg").read_bytes()
    event_missing_fields = json.dumps({"schema_version": 1, "media_id": "x"}).encode()
    event_v2 = json.dumps({"schema_version": 2, "media_id": "x", "anything": True}).encode()
    return [
        Sample("zero_bytes", b"", "image/jpeg", "dlq:empty_file"),
        Sample("truncated_jpeg", portrait[: len(portrait) // 3], "image/jpeg", "dlq:corrupt_image"),
        Sample("text_named_jpg", b"this is not an image\n" * 20, "image/jpeg", "dlq:unsupported_format"),
        Sample("pdf_named_jpg", b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n" * 10, "image/jpeg",
               "dlq:unsupported_format"),
        Sample("decompression_bomb", png_bomb(), "image/png", "dlq:decompression_bomb"),
        Sample("header_30000", png_header_only(30000, 30000), "image/png", "dlq:decompression_bomb"),
        Sample("one_pixel", encode(Image.new("RGB", (1, 1)), "PNG"), "image/png", "dlq:image_too_small"),
        Sample("corrupt_mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40, "video/mp4", "dlq:corrupt_video"),
        Sample("missing_object", None, "image/jpeg", "dlq:object_missing"),
        Sample("oversized", b"\xff\xd8\xff" + b"\x00" * (max_media_bytes + 1), "image/jpeg", "dlq:file_too_large"),
        Sample("sha_mismatch", portrait, "image/jpeg", "dlq:sha256_mismatch", sha256_override="0" * 64),
        Sample("malformed_json", None, "", "dlq:malformed_json", raw_event=b'{"schema_version": 1, "media_'),
        Sample("json_array", None, "", "dlq:malformed_json", raw_event=b"[1, 2, 3]"),
        Sample("wrong_schema_version", None, "", "dlq:unsupported_schema_version", raw_event=event_v2),
        Sample("schema_invalid", None, "", "dlq:schema_invalid", raw_event=event_missing_fields),
    ]
