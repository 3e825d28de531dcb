"""Bytes to RGB frames: images of every common kind, animated GIFs and videos.

Everything that can go wrong with a hostile or broken file is a ``MediaError`` with a
reason code (the dead-letter reason), never a crash or an unbounded allocation:
a byte limit before decoding, Pillow's decompression-bomb guard as an error, a pixel
limit, a frame cap for animations and videos.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mimamori.core.config import PipelineConfig
from mimamori.core.errors import InvalidInput
from mimamori.media import orientation
from mimamori.media.orientation import UPRIGHT, Orientation

VIDEO_TYPES = ("video/mp4", "video/webm", "video/quicktime")
VIDEO_SIGNATURES = (b"ftyp", b"\x1a\x45\xdf\xa3")  # ISO BMFF (MP4, MOV) at offset 4; Matroska/WebM at 0


class MediaError(InvalidInput):
    """A file that cannot be decoded safely; ``reason`` is the dead-letter reason."""


@dataclass
class Frame:
    time_ms: int
    image: Image.Image  # RGB


@dataclass
class DecodedMedia:
    sha256: str
    kind: str  # "image", "animation" or "video"
    width: int
    height: int
    frames: list[Frame] = field(default_factory=list)
    # How the stored pixels were turned to be upright (EXIF, or a video's display matrix):
    # frames, width and height are of the upright picture.
    orientation: Orientation = UPRIGHT


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: CMYK, palette, alpha (on grey), 16-bit and greyscale."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (128, 128, 128))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def _is_video(data: bytes, content_type: str) -> bool:
    return content_type in VIDEO_TYPES or data[4:8] == VIDEO_SIGNATURES[0] or data[:4] == VIDEO_SIGNATURES[1]


def decode_media(data: bytes, content_type: str, limits: PipelineConfig | None = None) -> DecodedMedia:
    limits = limits or PipelineConfig()
    if not data:
        raise MediaError("empty_file", "the object is empty (0 bytes)")
    if len(data) > limits.max_media_bytes:
        raise MediaError("file_too_large", f"{len(data)} bytes, over the limit of {limits.max_media_bytes}")
    digest = sha256_hex(data)
    if _is_video(data, content_type):
        return _decode_video(data, digest, limits)
    return _decode_image(data, digest, limits)


def _decode_image(data: bytes, digest: str, limits: PipelineConfig) -> DecodedMedia:
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > limits.max_pixels:
                raise MediaError("image_too_large", f"{width}x{height} pixels, over {limits.max_pixels}")
            if min(width, height) < limits.min_side:
                raise MediaError("image_too_small", f"{width}x{height} pixels, under {limits.min_side} a side")
            frames = []
            count = getattr(image, "n_frames", 1)
            if count > 1:  # an animation: sample frames evenly, first one included
                step = max(1, count // limits.max_video_frames)
                elapsed = 0
                for index in range(0, count, step):
                    image.seek(index)
                    frames.append(Frame(elapsed, to_rgb(image)))
                    elapsed += int(image.info.get("duration", 100)) * step
                    if len(frames) >= limits.max_video_frames:
                        break
                return DecodedMedia(digest, "animation", width, height, frames)
            image.load()
            turned = orientation.from_exif(image)
            rgb = to_rgb(ImageOps.exif_transpose(image))
            return DecodedMedia(digest, "image", rgb.width, rgb.height, [Frame(0, rgb)], turned)
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise MediaError("decompression_bomb", str(error)) from None
    except UnidentifiedImageError:
        raise MediaError("unsupported_format", "not an image or video format this pipeline reads") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise MediaError("corrupt_image", f"cannot decode: {error}") from None


def _video_orientation(frame, stream) -> Orientation:
    """The display matrix of the first decoded frame (FFmpeg copies the container's onto it)."""
    from av.sidedata.sidedata import Type

    matrix = frame.side_data.get(Type.DISPLAYMATRIX)
    if matrix is not None:
        entries = np.frombuffer(bytes(matrix), dtype="<i4")[:9].tolist()
        return orientation.from_display_matrix(frame.rotation, entries)
    tags = {key.lower(): value for key, value in stream.metadata.items()}  # Matroska writes ROTATE
    return orientation.from_rotate_tag(tags.get("rotate"))


def _decode_video(data: bytes, digest: str, limits: PipelineConfig) -> DecodedMedia:
    import av

    frames: list[Frame] = []
    turned: Orientation | None = None
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise MediaError("corrupt_video", "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > limits.max_pixels:
                raise MediaError("image_too_large", f"video frames of {width}x{height} pixels")
            next_sample_ms = 0.0
            previous: np.ndarray | None = None
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                time_ms = int(frame.time * 1000)
                image = frame.to_image()
                thumb = np.asarray(image.convert("L").resize((64, 36)), dtype=np.float32)
                cut = previous is not None and float(np.abs(thumb - previous).mean()) > limits.video_scene_change
                previous = thumb
                if turned is None:
                    turned = _video_orientation(frame, stream)
                if time_ms >= next_sample_ms or cut:
                    frames.append(Frame(time_ms, orientation.apply(image.convert("RGB"), turned)))
                    next_sample_ms = time_ms + limits.video_frame_interval_s * 1000
                    if len(frames) >= limits.max_video_frames:
                        break
    except MediaError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as error:
        if frames:  # a truncated tail: keep what decoded
            return DecodedMedia(digest, "video", frames[0].image.width, frames[0].image.height, frames,
                                turned or UPRIGHT)
        raise MediaError("corrupt_video", f"cannot decode video: {error}") from None
    if not frames:
        raise MediaError("corrupt_video", "the video has no decodable frame")
    return DecodedMedia(digest, "video", frames[0].image.width, frames[0].image.height, frames, turned or UPRIGHT)
