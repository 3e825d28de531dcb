"""Local features against shared overlays (issue 20): when do unrelated pictures line up?

    .venv/bin/python bench/local_features.py [--people 60] [--threshold 8]

bench/matching.py measures the crop-robust signal (mimamori.media.local_features) on edited
copies: recall per edit family and false matches against other people's clean photos. What it
cannot see is the signal's own failure: ORB keypoints gather on high-contrast text and logos, so
two *unrelated* pictures carrying the same overlay (a photo agency's or a site's watermark, meme
captions, an app's screen frame) line up under one transform. This puts the same overlay on the
first photo of different LFW people and scores pictures of other people against them:

- **clean references**: the references are the photos as they are (the leaked originals a client
  gives), the queries carry the overlay, for galleries of 1 and of ``--gallery`` references (the
  ratio test is weakest with one);
- **overlaid references**: the references carry it too (a reference collected from where it was
  posted, with that site's watermark), for galleries of 1 and of ``--gallery`` references (the
  gallery-wide ratio test sees a watermark shared by several references as ambiguous).

Each row: the highest inlier count of a query against a reference of another person, and how many
of the pairs reach ``--threshold``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._cache import LFW, lfw_files
from bench.matching import backdrops, local_gallery
from mimamori.core.config import MatchingConfig
from mimamori.media.local_features import extract
from tests.support import edits


def watermark(image: Image.Image) -> Image.Image:
    """An agency's watermark: a dark box with its name and a photographer's, across the lower middle."""
    result = image.resize((600, 600))
    draw = ImageDraw.Draw(result)
    draw.rectangle((150, 420, 470, 500), fill=(40, 40, 40))
    draw.text((165, 430), "agency images", fill=(255, 255, 255), font=ImageFont.load_default(size=40))
    draw.text((200, 470), "Photographer Name", fill=(230, 230, 230), font=ImageFont.load_default(size=20))
    return result


def overlays(others: list[Image.Image]) -> dict[str, Callable[[Image.Image], Image.Image]]:
    screenshot = next(e for e in edits.reupload_edits(others) if e.name == "screenshot")
    return {"watermark (box, 7% of the picture)": watermark,
            "meme captions (same text)": lambda im: edits.caption_bars(im.resize((500, 500))),
            "caption across the face (same text)": lambda im: edits.text_overlay(im.resize((500, 500))),
            "phone screenshot frame": lambda im: screenshot.apply(im.resize((500, 500)), [])}


def worst(references: list[Image.Image], queries: list[Image.Image], threshold: int) -> tuple[int, int, int]:
    """(highest inlier count, pairs at or over the threshold, pairs) of queries against the references."""
    gallery, _ = local_gallery(references)
    scores = [gallery.scores(extract(query)) for query in queries]
    counts = [n for found in scores for n in found.values()]
    return max(counts, default=0), sum(n >= threshold for n in counts), len(references) * len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=60, help="LFW people: the first --gallery are references")
    parser.add_argument("--gallery", type=int, default=20, help="references in the larger gallery")
    parser.add_argument("--threshold", type=int, default=MatchingConfig().local_min_inliers)
    args = parser.parse_args()
    began = time.perf_counter()
    firsts: dict[str, str] = {}
    for name in lfw_files():
        firsts.setdefault(name.split("/", 1)[0], name)
    photos = [Image.open(LFW / firsts[p]).convert("RGB") for p in sorted(firsts)[: args.people]]
    references, queries = photos[: args.gallery], photos[args.gallery:]
    print(f"{len(references)} references, {len(queries)} queries (other people), threshold {args.threshold}")
    print("| overlay | references | gallery | highest inliers, different people | pairs at threshold |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, overlay in overlays(backdrops()).items():
        marked = [overlay(q) for q in queries]
        clean = [r.resize(marked[0].size) for r in references]
        rows = [("clean", clean[:1]), ("clean", clean),
                ("overlaid", [overlay(references[0])]), ("overlaid", [overlay(r) for r in references])]
        for kind, gallery in rows:
            top, over, pairs = worst(gallery, marked, args.threshold)
            print(f"| {name} | {kind} | {len(gallery)} | {top} | {over} of {pairs:,} |", flush=True)
    print(f"done in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
