"""The edits a re-upload typically carries, as one library for tests and benchmarks.

Each edit takes an RGB image and returns the edited RGB image; ``EDITS`` names a
representative set. Edits that must keep the face intact (pixelating the background,
pasting onto another background) take the face box.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFilter, ImageOps

Box = tuple[float, float, float, float]


def reencode(image: Image.Image, quality: int = 50) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def resize(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((max(1, round(image.width * factor)), max(1, round(image.height * factor))),
                        Image.Resampling.LANCZOS)


def crop(image: Image.Image, fraction: float) -> Image.Image:
    """Cut ``fraction`` of the width and height, centred."""
    dx, dy = image.width * fraction / 2, image.height * fraction / 2
    return image.crop((round(dx), round(dy), round(image.width - dx), round(image.height - dy)))


def mirror(image: Image.Image) -> Image.Image:
    return ImageOps.mirror(image)


def border(image: Image.Image, fraction: float = 0.1, colour: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    return ImageOps.expand(image, border=round(max(image.size) * fraction), fill=colour)


def blur(image: Image.Image, radius: float = 2.0) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


def pixelate_outside(image: Image.Image, face: Box, block: int = 16) -> Image.Image:
    """Pixelate everything but the face (a common way to hide a body or a room)."""
    small = image.resize((max(1, image.width // block), max(1, image.height // block)), Image.Resampling.BILINEAR)
    result = small.resize(image.size, Image.Resampling.NEAREST)
    box = tuple(round(v) for v in face)
    result.paste(image.crop(box), box[:2])
    return result


def paste_on_background(image: Image.Image, face: Box, scale: float = 1.5,
                        colour: tuple[int, int, int] = (40, 90, 160)) -> Image.Image:
    """The face region, with some context, pasted onto a plain canvas of another size."""
    x1, y1, x2, y2 = face
    w, h = x2 - x1, y2 - y1
    region = image.crop((round(max(0, x1 - w * 0.5)), round(max(0, y1 - h * 0.5)),
                         round(min(image.width, x2 + w * 0.5)), round(min(image.height, y2 + h * 0.5))))
    canvas = Image.new("RGB", (round(region.width * scale * 1.4), round(region.height * scale)), colour)
    canvas.paste(region, (round(canvas.width * 0.1), round((canvas.height - region.height) / 2)))
    return canvas


def text_overlay(image: Image.Image, text: str = "leaked - watch full video") -> Image.Image:
    result = image.copy()
    draw = ImageDraw.Draw(result)
    step = max(20, image.height // 10)
    for y in range(step // 2, image.height, step * 3):
        draw.text((10, y), text, fill=(255, 255, 0))
    return result


def screenshot(image: Image.Image) -> Image.Image:
    """Shrunk, padded into a phone-sized frame with bars, and re-encoded, as a screenshot is."""
    phone = Image.new("RGB", (720, 1280), (16, 16, 16))
    fitted = ImageOps.contain(image, (720, 1000))
    phone.paste(fitted, ((720 - fitted.width) // 2, 140))
    return reencode(phone, 80)


EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "jpeg_q30": lambda im: reencode(im, 30),
    "jpeg_q90": lambda im: reencode(im, 90),
    "resize_0.25": lambda im: resize(im, 0.25),
    "resize_2": lambda im: resize(im, 2.0),
    "crop_10": lambda im: crop(im, 0.10),
    "crop_30": lambda im: crop(im, 0.30),
    "mirror": mirror,
    "border": border,
    "blur": blur,
    "text": text_overlay,
    "screenshot": screenshot,
}
