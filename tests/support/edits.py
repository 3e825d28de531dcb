"""The edits a re-upload typically carries, as one library for tests and benchmarks.

Each function takes an RGB image and returns the edited RGB image. ``EDITS`` is the
catalogue the match-quality benchmark (bench/quality.py) measures, spanning the ranges a
re-upload shows in the wild; each entry takes the image and the boxes of its faces, since
some edits (pixelating the background or the body, pasting onto another background) keep
the faces intact on purpose.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

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


def _pixelated(image: Image.Image, block: int) -> Image.Image:
    small = image.resize((max(1, image.width // block), max(1, image.height // block)), Image.Resampling.BILINEAR)
    return small.resize(image.size, Image.Resampling.NEAREST)


def _int_box(box: Box, image: Image.Image) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return (max(0, round(x1)), max(0, round(y1)), min(image.width, round(x2)), min(image.height, round(y2)))


def pixelate_outside(image: Image.Image, faces: Sequence[Box], block: int = 16) -> Image.Image:
    """Pixelate everything but the faces (a common way to hide a body or a room)."""
    result = _pixelated(image, block)
    for face in faces:
        box = _int_box(face, image)
        result.paste(image.crop(box), box[:2])
    return result


def pixelate_body(image: Image.Image, faces: Sequence[Box], block: int = 16) -> Image.Image:
    """Pixelate the body under each face (three face widths wide, down to the bottom), not the face."""
    result = image.copy()
    pixelated = _pixelated(image, block)
    for x1, y1, x2, y2 in faces:
        width = x2 - x1
        body = _int_box((x1 - width, y2 + 0.15 * (y2 - y1), x2 + width, image.height), image)
        if body[2] > body[0] and body[3] > body[1]:
            result.paste(pixelated.crop(body), body[:2])
    return result


def paste_on_background(image: Image.Image, faces: Sequence[Box], colour: tuple[int, int, int] = (40, 90, 160)
                        ) -> Image.Image:
    """Each face with some context, cut out and pasted side by side onto a plain canvas of another size."""
    regions = []
    for x1, y1, x2, y2 in faces:
        w, h = x2 - x1, y2 - y1
        regions.append(image.crop(_int_box((x1 - 0.5 * w, y1 - 0.5 * h, x2 + 0.5 * w, y2 + 0.5 * h), image)))
    if not regions:
        return image.copy()
    gap = max(16, max(r.width for r in regions) // 5)
    canvas = Image.new("RGB", (sum(r.width for r in regions) + gap * (len(regions) + 3),
                               round(max(r.height for r in regions) * 1.6)), colour)
    x = gap * 2
    for region in regions:
        canvas.paste(region, (x, round((canvas.height - region.height) * 0.4)))
        x += region.width + gap
    return canvas


def text_overlay(image: Image.Image, text: str = "leaked - watch full video") -> Image.Image:
    """Captions across the image, large enough to cross the faces."""
    result = image.copy()
    draw = ImageDraw.Draw(result)
    size = max(12, image.height // 14)
    font = ImageFont.load_default(size=size)
    for y in range(size // 2, image.height, size * 3):
        draw.text((10, y), text, fill=(255, 255, 0), font=font, stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0))
    return result


def screenshot(image: Image.Image) -> Image.Image:
    """Shrunk, padded into a phone-sized frame with bars, and re-encoded, as a screenshot is."""
    phone = Image.new("RGB", (720, 1280), (16, 16, 16))
    fitted = ImageOps.contain(image, (720, 1000))
    phone.paste(fitted, ((720 - fitted.width) // 2, 140))
    return reencode(phone, 80)


@dataclass(frozen=True)
class Edit:
    name: str
    family: str  # edits of one kind at different strengths share a family
    apply: Callable[[Image.Image, Sequence[Box]], Image.Image]


def _plain(function: Callable[[Image.Image], Image.Image]) -> Callable[[Image.Image, Sequence[Box]], Image.Image]:
    return lambda image, faces: function(image)


EDITS: tuple[Edit, ...] = (
    *(Edit(f"jpeg_q{q}", "re-encode", _plain(lambda im, q=q: reencode(im, q))) for q in (30, 50, 70, 90)),
    *(Edit(f"resize_{f}x", "resize", _plain(lambda im, f=f: resize(im, f))) for f in (0.25, 0.5, 1.5, 2.0)),
    *(Edit(f"crop_{round(c * 100)}", "crop", _plain(lambda im, c=c: crop(im, c))) for c in (0.1, 0.2, 0.3)),
    Edit("mirror", "mirror", _plain(mirror)),
    *(Edit(f"border_{round(b * 100)}", "border", _plain(lambda im, b=b: border(im, b))) for b in (0.05, 0.2)),
    Edit("border_black", "border", _plain(lambda im: border(im, 0.1, (0, 0, 0)))),
    *(Edit(f"blur_{r}", "blur", _plain(lambda im, r=r: blur(im, r))) for r in (1, 3)),
    Edit("pixelate_background", "pixelate", pixelate_outside),
    Edit("pixelate_body", "pixelate", pixelate_body),
    Edit("paste_on_background", "paste", paste_on_background),
    Edit("text_overlay", "text", _plain(text_overlay)),
    Edit("screenshot", "screenshot", _plain(screenshot)),
)
