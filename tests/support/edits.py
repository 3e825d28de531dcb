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

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

Box = tuple[float, float, float, float]


def reencode(image: Image.Image, quality: int = 50, fmt: str = "JPEG") -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, fmt, quality=quality)
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


# --- Issue 20: the edit families of a re-upload that a face embedding alone misses --------------
# Used by bench/matching.py (recall per family of each signal and of the combined decision).


def thumbnail(image: Image.Image, side: int) -> Image.Image:
    """The picture shrunk so that its longer side is ``side`` pixels (a gallery or search thumbnail)."""
    return ImageOps.contain(image, (side, side), Image.Resampling.LANCZOS)


def corner_crop(image: Image.Image, fraction: float) -> Image.Image:
    """Cut ``fraction`` of the width and height off the right and bottom (the top-left part is kept)."""
    return image.crop((0, 0, round(image.width * (1 - fraction)), round(image.height * (1 - fraction))))


def rotate(image: Image.Image, degrees: float) -> Image.Image:
    """Turned ``degrees`` clockwise: quarter turns exactly, other angles on the same canvas (corners black)."""
    if degrees % 90 == 0:
        turns = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}
        return image.transpose(turns[int(degrees) % 360]) if degrees % 360 else image.copy()
    return image.rotate(-degrees, Image.Resampling.BILINEAR, expand=False, fillcolor=(0, 0, 0))


def noise(image: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    """Gaussian noise of ``sigma`` grey levels on every channel."""
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + np.random.default_rng(seed).normal(0.0, sigma, pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def greyscale(image: Image.Image) -> Image.Image:
    return ImageOps.grayscale(image).convert("RGB")


def colour_filter(image: Image.Image, kind: str) -> Image.Image:
    """An app's photo filter: ``warm`` (sepia-like tint), ``vivid`` (saturation and contrast up), ``faded``."""
    if kind == "warm":
        grey = ImageOps.grayscale(image)
        return ImageOps.colorize(grey, black=(40, 20, 10), white=(255, 235, 200), mid=(170, 120, 80))
    if kind == "vivid":
        return ImageEnhance.Contrast(ImageEnhance.Color(image).enhance(1.8)).enhance(1.3)
    if kind == "faded":
        return ImageEnhance.Brightness(ImageEnhance.Contrast(image).enhance(0.6)).enhance(1.15)
    raise ValueError(f"unknown colour filter {kind!r}")


def caption_bars(image: Image.Image, text: str = "you won't believe this") -> Image.Image:
    """A meme: white bands above and below the picture with black captions in them."""
    band = max(16, image.height // 6)
    canvas = ImageOps.expand(image, border=(0, band, 0, band), fill=(255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(10, band // 2))
    for y in (band // 4, canvas.height - band + band // 4):
        draw.text((max(4, image.width // 20), y), text, fill=(0, 0, 0), font=font)
    return canvas


def stickers(image: Image.Image, faces: Sequence[Box], count: int = 4, seed: int = 0) -> Image.Image:
    """Opaque coloured stickers (discs and stars' stand-ins) of a tenth of the picture each, off the faces' centres."""
    result = image.copy()
    draw = ImageDraw.Draw(result)
    rng = np.random.default_rng(seed)
    radius = max(4, min(image.size) // 10)
    colours = [(255, 60, 120), (255, 210, 0), (60, 200, 255), (120, 255, 80)]
    centres = [((x1 + x2) / 2, (y1 + y2) / 2) for x1, y1, x2, y2 in faces]
    placed = 0
    for _ in range(50 * count):
        if placed == count:
            break
        x, y = rng.uniform(radius, image.width - radius), rng.uniform(radius, image.height - radius)
        if any(abs(x - cx) < radius * 1.5 and abs(y - cy) < radius * 1.5 for cx, cy in centres):
            continue
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colours[placed % len(colours)],
                     outline=(255, 255, 255), width=max(1, radius // 8))
        placed += 1
    return result


def mosaic_faces(image: Image.Image, faces: Sequence[Box], blocks: int = 8) -> Image.Image:
    """The faces themselves mosaicked: each face box in ``blocks`` x ``blocks`` flat squares."""
    result = image.copy()
    for face in faces:
        box = _int_box(face, image)
        width, height = box[2] - box[0], box[3] - box[1]
        if width < 2 or height < 2:
            continue
        region = image.crop(box).resize((blocks, blocks), Image.Resampling.BOX)
        result.paste(region.resize((width, height), Image.Resampling.NEAREST), box[:2])
    return result


def eye_bar(image: Image.Image, faces: Sequence[Box]) -> Image.Image:
    """A black bar across the eyes of each face (from 25% to 50% of the detector's box, 10% wider than it)."""
    result = image.copy()
    draw = ImageDraw.Draw(result)
    for x1, y1, x2, y2 in faces:
        w, h = x2 - x1, y2 - y1
        draw.rectangle((x1 - 0.05 * w, y1 + 0.25 * h, x2 + 0.05 * w, y1 + 0.5 * h), fill=(0, 0, 0))
    return result


def paste_into(image: Image.Image, background: Image.Image, scale: float = 0.6,
               at: tuple[float, float] = (0.3, 0.25)) -> Image.Image:
    """The whole picture shrunk and pasted into another photo (``at``: its top-left, in background fractions)."""
    canvas = background.copy()
    fitted = ImageOps.contain(image, (round(canvas.width * scale), round(canvas.height * scale)))
    x = min(canvas.width - fitted.width, round(canvas.width * at[0]))
    y = min(canvas.height - fitted.height, round(canvas.height * at[1]))
    canvas.paste(fitted, (x, y))
    return canvas


def collage(image: Image.Image, others: Sequence[Image.Image], columns: int = 2, cell: int = 400,
            position: int = 0) -> Image.Image:
    """A grid of pictures of ``cell`` pixels each, this one in cell ``position``, the others around it."""
    tiles = list(others)
    tiles.insert(position, image)
    rows = -(-len(tiles) // columns)
    gap = max(4, cell // 40)
    canvas = Image.new("RGB", (columns * cell + (columns + 1) * gap, rows * cell + (rows + 1) * gap), (250, 250, 250))
    for i, tile in enumerate(tiles):
        fitted = ImageOps.contain(tile, (cell, cell))
        x = gap + (i % columns) * (cell + gap) + (cell - fitted.width) // 2
        y = gap + (i // columns) * (cell + gap) + (cell - fitted.height) // 2
        canvas.paste(fitted, (x, y))
    return canvas


def chain(*steps: Callable[[Image.Image, Sequence[Box]], Image.Image]
          ) -> Callable[[Image.Image, Sequence[Box]], Image.Image]:
    """Several edits one after the other. Steps after the first get no face boxes (the first may move them)."""
    def apply(image: Image.Image, faces: Sequence[Box]) -> Image.Image:
        image = steps[0](image, faces)
        for step in steps[1:]:
            image = step(image, ())
        return image
    return apply


def reupload_edits(others: Sequence[Image.Image]) -> tuple[Edit, ...]:
    """Every edit family of issue 20, at the strengths a re-upload shows; ``others``: pictures of other scenes
    (at least three) for pasting into and collages.
    """
    if len(others) < 3:
        raise ValueError("reupload_edits needs at least three other pictures for pastes and collages")
    backdrop, second, third = others[0], others[1], others[2]
    return (
        *(Edit(f"jpeg_q{q}", "re-encode", _plain(lambda im, q=q: reencode(im, q))) for q in (20, 50)),
        Edit("webp_q40", "re-encode", _plain(lambda im: reencode(im, 40, "WEBP"))),
        *(Edit(f"resize_{f}x", "resize", _plain(lambda im, f=f: resize(im, f))) for f in (0.5, 1.5)),
        Edit("aspect_4x3", "resize", _plain(lambda im: im.resize((im.width, round(im.height * 0.75))))),
        *(Edit(f"thumb_{s}", "thumbnail", _plain(lambda im, s=s: thumbnail(im, s))) for s in (64, 80, 96)),
        *(Edit(f"crop_{round(c * 100)}", "crop", _plain(lambda im, c=c: crop(im, c))) for c in (0.1, 0.3, 0.5)),
        Edit("crop_corner_40", "crop", _plain(lambda im: corner_crop(im, 0.4))),
        Edit("mirror", "mirror", _plain(mirror)),
        *(Edit(f"rotate_{d}", "rotate 90/180/270", _plain(lambda im, d=d: rotate(im, d))) for d in (90, 180, 270)),
        *(Edit(f"rotate_{d}", "rotate small", _plain(lambda im, d=d: rotate(im, d))) for d in (-8, 3, 10)),
        Edit("border_10", "border", _plain(lambda im: border(im, 0.1))),
        Edit("border_black_25", "border", _plain(lambda im: border(im, 0.25, (0, 0, 0)))),
        # Radii per 500 pixels of the longer side, so a 250-pixel photo and a 2000-pixel one blur alike.
        *(Edit(f"blur_{r}", "blur", _plain(lambda im, r=r: blur(im, r * max(im.size) / 500))) for r in (1, 3, 5)),
        *(Edit(f"noise_{s}", "noise", _plain(lambda im, s=s: noise(im, s))) for s in (10, 25)),
        *(Edit(f"filter_{k}", "colour filter", _plain(lambda im, k=k: colour_filter(im, k)))
          for k in ("warm", "vivid", "faded")),
        Edit("greyscale", "colour filter", _plain(greyscale)),
        Edit("text_overlay", "captions and stickers", _plain(text_overlay)),
        Edit("caption_bars", "captions and stickers", _plain(caption_bars)),
        Edit("stickers", "captions and stickers", stickers),
        Edit("pixelate_body", "pixelated body", pixelate_body),
        Edit("mosaic_face_8", "face mosaic", lambda im, f: mosaic_faces(im, f, 8)),
        Edit("mosaic_face_5", "face mosaic", lambda im, f: mosaic_faces(im, f, 5)),
        Edit("eye_bar", "eye bar", eye_bar),
        Edit("paste_on_background", "paste", paste_on_background),
        Edit("paste_into_scene", "paste", _plain(lambda im: paste_into(im, backdrop))),
        Edit("collage_2x2", "collage", _plain(lambda im: collage(im, [backdrop, second, third], 2, 400, 3))),
        Edit("collage_strip", "collage", _plain(lambda im: collage(im, [second, third], 3, 300, 1))),
        Edit("screenshot", "screenshot", _plain(screenshot)),
        Edit("crop_mirror_jpeg", "chain", chain(_plain(lambda im: crop(im, 0.2)), _plain(mirror),
                                                 _plain(lambda im: reencode(im, 60)))),
        Edit("rotate90_thumb_caption", "chain", chain(_plain(lambda im: rotate(im, 90)), _plain(caption_bars),
                                                       _plain(lambda im: thumbnail(im, 160)))),
        Edit("eyebar_filter_border", "chain", chain(eye_bar, _plain(lambda im: colour_filter(im, "warm")),
                                                     _plain(lambda im: border(im, 0.08)))),
        Edit("mosaic_crop_screenshot", "chain", chain(lambda im, f: mosaic_faces(im, f, 8),
                                                       _plain(lambda im: crop(im, 0.2)), _plain(screenshot))),
    )
