"""Which way up a picture is meant to be shown, and turning its pixels that way.

Phones record portrait video as landscape pixels plus a *display matrix* in the container
(MP4/MOV ``tkhd``, Matroska projection) that says how to turn them; photos carry the same
in EXIF. A detector handed the stored pixels sees faces lying on their side and finds
none, so every decoded frame is turned upright before detection.

An orientation here is ``(rotation, mirrored)``: flip left-right first if ``mirrored``,
then rotate ``rotation`` degrees clockwise. Those two cover all eight orientations (EXIF's
eight tags, and every display matrix of whole quarter turns with or without a flip).
The video rules follow FFmpeg's own ``-autorotate`` (fftools ``ffmpeg_filter.c``), so a
clip comes out the way ``ffmpeg`` and every player show it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class Orientation:
    rotation: int = 0  # degrees clockwise, applied after the mirror: 0, 90, 180 or 270
    mirrored: bool = False  # flipped left-right before the rotation

    @property
    def upright(self) -> bool:
        return self.rotation == 0 and not self.mirrored


UPRIGHT = Orientation()

# EXIF tag 0x0112 (Orientation): 1 is as stored; 2-8 as in the EXIF 2.32 standard.
EXIF_ORIENTATIONS = {
    1: Orientation(0, False), 2: Orientation(0, True), 3: Orientation(180, False), 4: Orientation(180, True),
    5: Orientation(270, True), 6: Orientation(90, False), 7: Orientation(90, True), 8: Orientation(270, False),
}

_ROTATE_CLOCKWISE = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
                     270: Image.Transpose.ROTATE_90}  # Pillow's ROTATE_n turn counter-clockwise


def apply(image: Image.Image, orientation: Orientation) -> Image.Image:
    """The picture as it is meant to be seen."""
    if orientation.mirrored:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if orientation.rotation:
        image = image.transpose(_ROTATE_CLOCKWISE[orientation.rotation])
    return image


def from_exif(image: Image.Image) -> Orientation:
    """The orientation an image's EXIF asks for (upright when it has none or an invalid tag)."""
    return EXIF_ORIENTATIONS.get(image.getexif().get(0x0112, 1), UPRIGHT)


def _quarter_turns(degrees: float) -> int | None:
    """0, 90, 180 or 270 for an angle within a degree of one of them, else None."""
    turned = round(degrees) % 360
    nearest = round(turned / 90) * 90 % 360
    return nearest if min(abs(turned - nearest), 360 - abs(turned - nearest)) <= 1 else None


def from_display_matrix(rotation: float, matrix: Sequence[int] | None) -> Orientation:
    """The orientation of a video frame from FFmpeg's display matrix.

    ``rotation`` is PyAV's ``VideoFrame.rotation`` (FFmpeg's ``av_display_rotation_get``,
    counter-clockwise degrees); ``matrix`` the nine 32-bit entries of the frame's
    DISPLAYMATRIX side data, whose signs say whether the picture is also mirrored.
    Angles that are not quarter turns (almost never written) are left as stored.
    """
    theta = _quarter_turns(-rotation)
    if theta is None or matrix is None or len(matrix) < 5:
        return UPRIGHT if theta is None else Orientation(theta, False)
    m = matrix
    if theta == 90:  # FFmpeg: transpose=cclock_flip if m[3] > 0 else clock
        return Orientation(270, True) if m[3] > 0 else Orientation(90, False)
    if theta == 270:  # transpose=clock_flip if m[3] < 0 else cclock
        return Orientation(90, True) if m[3] < 0 else Orientation(270, False)
    if theta == 180:  # hflip if m[0] < 0, vflip if m[4] < 0
        hflip, vflip = m[0] < 0, m[4] < 0
        return {(True, True): Orientation(180, False), (True, False): Orientation(0, True),
                (False, True): Orientation(180, True)}.get((hflip, vflip), UPRIGHT)
    return Orientation(180, True) if m[4] < 0 else UPRIGHT  # theta 0: vflip if m[4] < 0


def from_rotate_tag(value: str | None) -> Orientation:
    """The legacy ``rotate`` metadata tag (clockwise degrees), for files without a display matrix."""
    try:
        theta = _quarter_turns(float(value)) if value else None
    except ValueError:
        return UPRIGHT
    return Orientation(theta, False) if theta else UPRIGHT
