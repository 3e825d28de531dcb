"""Frames are turned upright as the container says: display matrices, rotate tags and EXIF.

The clips are made here with PyAV: a picture as it should be seen is stored turned the other
way, with the display matrix that undoes it (PyAV's ``set_display_rotation``: counter-clockwise
degrees, then the flips), exactly as a phone stores portrait video.
"""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from PIL import Image, ImageOps

from mimamori.core.config import PipelineConfig
from mimamori.media import orientation
from mimamori.media.decode import decode_media
from mimamori.media.orientation import EXIF_ORIENTATIONS, Orientation

LIMITS = PipelineConfig(min_side=16)


def seen_picture() -> Image.Image:
    """64x48, with a white block top-left and a red one bottom-right: every turn looks different."""
    pixels = np.full((48, 64, 3), 40, np.uint8)
    pixels[4:20, 4:24] = 250
    pixels[30:44, 48:60] = (250, 0, 0)
    return Image.fromarray(pixels)


def stored_as(picture: Image.Image, degrees: int, hflip: bool, vflip: bool) -> Image.Image:
    """The pixels a recorder stores so that its display matrix turns them into ``picture``."""
    if hflip:
        picture = ImageOps.mirror(picture)
    if vflip:
        picture = ImageOps.flip(picture)
    return picture.rotate(-degrees, expand=True)  # undo a counter-clockwise turn


def clip(stored: Image.Image, container: str, degrees: int = 0, hflip: bool = False, vflip: bool = False,
         tags: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height = stored.size
        stream.pix_fmt = "yuv420p"
        if degrees or hflip or vflip:
            stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        stream.metadata.update(tags or {})
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_image(stored)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def difference(a: Image.Image, b: Image.Image) -> float:
    if a.size != b.size:
        return float("inf")
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
@pytest.mark.parametrize("hflip,vflip", [(False, False), (True, False), (False, True)])
def test_each_display_matrix_gives_the_picture_as_seen(degrees, hflip, vflip):
    picture = seen_picture()
    data = clip(stored_as(picture, degrees, hflip, vflip), "mp4", degrees, hflip, vflip)
    media = decode_media(data, "video/mp4", LIMITS)
    assert (media.width, media.height) == picture.size
    for frame in media.frames:
        assert difference(frame.image, picture) < 6  # lossy encoding; a wrong turn differs by ~60
        assert difference(frame.image, ImageOps.mirror(picture)) > 20
        assert difference(frame.image, ImageOps.flip(picture)) > 20
    if degrees or hflip or vflip:
        assert not media.orientation.upright


def test_stored_pixels_differ_from_the_picture_so_the_tests_above_mean_something():
    picture = seen_picture()
    for degrees, hflip in [(180, False), (0, True)]:
        stored = stored_as(picture, degrees, hflip, False)
        assert difference(stored, picture) > 20


def test_the_orientation_applied_is_reported():
    picture = seen_picture()
    cases = {(90, False): Orientation(270, False), (270, False): Orientation(90, False),
             (180, False): Orientation(180, False), (0, True): Orientation(0, True)}
    for (degrees, hflip), expected in cases.items():
        data = clip(stored_as(picture, degrees, hflip, False), "mp4", degrees, hflip)
        assert decode_media(data, "video/mp4", LIMITS).orientation == expected


def test_matroska_display_matrix_and_legacy_rotate_tag():
    picture = seen_picture()
    with_matrix = clip(stored_as(picture, 90, False, False), "matroska", 90)
    assert difference(decode_media(with_matrix, "video/webm", LIMITS).frames[0].image, picture) < 6
    # An old-style "rotate" tag says how many degrees clockwise to turn the stored pixels.
    with_tag = clip(picture.rotate(90, expand=True), "matroska", tags={"rotate": "90"})
    media = decode_media(with_tag, "video/webm", LIMITS)
    assert media.orientation == Orientation(90, False)
    assert difference(media.frames[0].image, picture) < 6


def test_rotate_tag_values():
    assert orientation.from_rotate_tag("90") == Orientation(90, False)
    assert orientation.from_rotate_tag("-90") == Orientation(270, False)
    assert orientation.from_rotate_tag("360") == orientation.UPRIGHT
    for junk in (None, "", "sideways", "45"):
        assert orientation.from_rotate_tag(junk) == orientation.UPRIGHT


def test_exif_orientations_agree_with_pillow_and_are_reported():
    picture = seen_picture()
    for tag, expected in EXIF_ORIENTATIONS.items():
        image = picture.copy()
        exif = image.getexif()
        exif[0x0112] = tag
        buffer = io.BytesIO()
        image.save(buffer, "PNG", exif=exif)
        media = decode_media(buffer.getvalue(), "image/png", LIMITS)
        assert media.orientation == expected, tag
        reference = ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))).convert("RGB")
        assert difference(orientation.apply(picture, expected), reference) == 0, tag
        assert difference(media.frames[0].image, reference) == 0, tag


def test_a_phone_video_with_a_rotation_flag_gives_upright_faces(testdata):
    """new_face_video-90.mp4: 17 s of close-up faces stored sideways with a 90° display matrix."""
    import torch

    from mimamori.core.config import DetectorConfig
    from mimamori.models.detector import FaceDetector

    detector = FaceDetector(DetectorConfig(), torch.device("cpu"))
    per_frame: dict[str, list[int]] = {}
    for name in ("new_face_video-90.mp4", "video_01.mp4", "video_02.mp4"):
        media = decode_media((testdata / "video" / name).read_bytes(), "video/mp4", PipelineConfig())
        faces = detector.detect([frame.image for frame in media.frames])
        per_frame[name] = [len(found) for found in faces]
        for frame, found in zip(media.frames, faces, strict=True):
            width, height = frame.image.size
            for face in found:  # boxes lie in the upright frame (a fifth at least: close-ups run over its edges)
                x1, y1, x2, y2 = face.box
                inside = max(0.0, min(x2, width) - max(x1, 0)) * max(0.0, min(y2, height) - max(y1, 0))
                assert inside >= 0.2 * (x2 - x1) * (y2 - y1), (name, frame.time_ms, face.box)
        if name == "new_face_video-90.mp4":
            assert media.orientation == Orientation(90, False)
            assert (media.width, media.height) == (640, 480)  # stored as 480x640
    rotated = per_frame["new_face_video-90.mp4"]
    print({name: f"{sum(1 for n in counts if n)}/{len(counts)} frames, {sum(counts)} faces"
           for name, counts in per_frame.items()})
    assert all(sum(counts) > 0 for counts in per_frame.values())
    assert sum(1 for n in rotated if n) >= 0.8 * len(rotated)  # faces in most sampled frames
    # About as often as in the upright clips (which show crowds, so more faces a frame; here one or two
    # people fill the frame): the share of sampled frames with a face.
    upright = [n for name in ("video_01.mp4", "video_02.mp4") for n in per_frame[name]]
    assert sum(1 for n in rotated if n) / len(rotated) >= 0.85 * sum(1 for n in upright if n) / len(upright)
