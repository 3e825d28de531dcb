"""Re-upload matching per edit family (issue 20): recall and false matches of each signal and of their union.

Signals, each measured on its own and combined (any one firing is a match):
- **face**: a face of the copy at or above the embedder's match threshold (cosine) against the
  reference's enrolled face (dlib's ResNet through the real detect -> align -> embed path);
- **pdq**: PDQ of the whole copy within ``--pdq-distance`` (31, PDQ's and HMA's default) of one
  of the reference's eight dihedral variants;
- **windows**: the crop-robust signal, PDQ of windows anchored on each face
  (mimamori.media.crop_hashes) within its distance of a reference window's dihedral variant;
- **local**: ORB keypoints matched against every reference and verified by one similarity
  transform (mimamori.media.local_features); its inlier threshold is fitted here on LFW people
  held out of the measured set (``--fit-people``), from their edited copies against each other;
- **grid** (the alternative the windows were chosen over): PDQ of 18 overlapping regions (3x3
  at 50% and at 70% of each side) on both sides, copy regions against the reference's whole
  picture and reference regions against the copy's whole picture.

References (the gallery): the five shared photos and all 1,580 LFW photos, each its own
picture; LFW's enrolled face is the central one, the group photo enrols its six. Sources (the
originals edited into re-uploads): the five shared photos and the first photo of
``--lfw-people`` LFW people, spread over the alphabet. Every copy is compared with every
reference: with its source (recall) and with all the others (false matches), split into other
people, where any signal firing is a false match, and other photos of the same person,
where an image-hash signal firing is a false re-upload match (the face signal matching there
is the identity match it is meant to make, and is not counted against it).

Detection fallbacks (models.detector.fallbacks) are on while measuring; a face found only
through one is marked, so each fallback's share of the recall is reported apart.

    .venv/bin/python bench/matching.py [--lfw-people 60] [--write docs/quality.md]

Features are cached under ~/.cache/mimamori/bench/ (bench/_cache.py), keyed by the edited
picture's pixels and the model and detector settings, so a second run only compares.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import platform
import sqlite3
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._cache import LFW, TESTDATA, cache_dir, lfw_files, write_block
from mimamori.core.config import load_settings
from mimamori.media import crop_hashes, local_features
from mimamori.media.local_features import FeatureGallery, LocalFeatures
from mimamori.media.pdq import PdqHash, pdq_dihedral, pdq_hash
from tests.support import edits

START, END = "<!-- matching:start -->", "<!-- matching:end -->"
GRID_SCALES = (0.5, 0.7)
SIGNALS = ("face", "pdq", "windows", "local", "grid")
CODE_VERSION = "matching-v1"  # bump when what a cached entry holds changes


# --- features of one picture --------------------------------------------------------------------

def grid_regions(size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    width, height = size
    boxes = []
    for scale in GRID_SCALES:
        w, h = width * scale, height * scale
        for fy in (0.0, 0.5, 1.0):
            for fx in (0.0, 0.5, 1.0):
                x, y = (width - w) * fx, (height - h) * fy
                boxes.append((round(x), round(y), round(x + w), round(y + h)))
    return boxes


@dataclass
class Faces:
    vectors: np.ndarray  # (faces, d): every face found, or a reference's enrolled faces
    boxes: list[tuple[float, float, float, float]]
    fallback: list[str]  # per face: "" or how a detection fallback found it
    seconds: float


@dataclass
class Hashes:
    pdq: np.ndarray  # (1, 32) for a copy, (8, 32) dihedral for a reference
    trimmed: np.ndarray  # (0 or 1, 32): a copy's PDQ with its uniform border trimmed
    windows: np.ndarray  # (n, 32): a copy's face windows; a reference's windows x 8 variants
    grid: np.ndarray  # (<= 18, 32) regions (a reference's x 8 variants); empty unless --grid
    seconds: dict[str, float] = field(default_factory=dict)


def _central(boxes, size: tuple[int, int]) -> int:
    cx, cy = size[0] / 2, size[1] / 2
    return min(range(len(boxes)), key=lambda i: ((boxes[i][0] + boxes[i][2]) / 2 - cx) ** 2
               + ((boxes[i][1] + boxes[i][3]) / 2 - cy) ** 2)


def encode_faces(encoder, image: Image.Image, central_only: bool) -> Faces:
    t = time.perf_counter()
    faces = encoder.encode(image)
    seconds = time.perf_counter() - t
    keep = list(range(len(faces)))
    if central_only and faces:
        keep = [_central([f.detection.box for f in faces], image.size)]
    vectors = (np.stack([faces[i].vector for i in keep]) if keep
               else np.zeros((0, encoder.spec.dimension), np.float32))
    return Faces(vectors.astype(np.float32), [tuple(map(float, faces[i].detection.box)) for i in keep],
                 [faces[i].detection.fallback for i in keep], seconds)


def _rows(hashes: list[PdqHash]) -> np.ndarray:
    if not hashes:
        return np.zeros((0, 32), np.uint8)
    return np.frombuffer(b"".join(h.bits for h in hashes), np.uint8).reshape(len(hashes), 32)


def hash_picture(image: Image.Image, boxes, reference: bool, grid: bool, scraped_side: int = 0) -> Hashes:
    """A picture's hashes; a copy's whole-picture hashes as the pipeline makes a scraped picture's
    (scaled to fit ``scraped_side``), a reference's of the full picture."""
    seconds = {}
    t = time.perf_counter()
    whole = pdq_dihedral(image) if reference else [pdq_hash(image, scraped_side)]
    seconds["pdq"] = time.perf_counter() - t
    t = time.perf_counter()
    trimmed = []
    if not reference:
        inner = crop_hashes.trim_border(image)
        if inner is not None:
            trimmed = [pdq_hash(inner, scraped_side)]
    seconds["trim"] = time.perf_counter() - t
    t = time.perf_counter()
    windows = [h for found in crop_hashes.window_hashes(image, boxes, reference) for h in found.hashes]
    seconds["windows"] = time.perf_counter() - t
    t = time.perf_counter()
    regions = []
    for box in grid_regions(image.size) if grid else ():
        cut = image.crop(box).resize((128, 128), Image.Resampling.BILINEAR)
        hashes = pdq_dihedral(cut) if reference else [pdq_hash(cut)]
        if hashes[0].quality >= crop_hashes.MIN_QUALITY:
            regions.extend(hashes)
    seconds["grid"] = time.perf_counter() - t
    return Hashes(_rows(whole), _rows(trimmed), _rows(windows), _rows(regions), seconds)


class Cache:
    """Faces and hashes by the picture's pixels and the settings that made them, in one SQLite file."""

    def __init__(self, path: Path, faces_key: str, hashes_key: str, scraped_side: int = 0):
        self.db = sqlite3.connect(path, timeout=120)  # two runs may fill one cache at once
        self.db.execute("CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, value BLOB)")
        self.faces_key, self.hashes_key, self.scraped_side = faces_key, f"{hashes_key}|{scraped_side}", scraped_side

    def _get(self, key: str, make):
        row = self.db.execute("SELECT value FROM features WHERE key = ?", (key,)).fetchone()
        if row:
            return pickle.loads(row[0]), True
        value = make()
        self.db.execute("INSERT OR REPLACE INTO features VALUES (?, ?)", (key, pickle.dumps(value)))
        return value, False

    def get(self, encoder, image: Image.Image, reference: bool, central_only: bool, grid: bool
            ) -> tuple[Faces, Hashes, bool]:
        pixels = hashlib.sha256(f"{image.size}".encode() + image.tobytes()).hexdigest()
        faces, hit = self._get(f"faces|{self.faces_key}|{central_only}|{pixels}",
                               lambda: encode_faces(encoder, image, central_only))
        hashes, hashed = self._get(f"hashes|{self.hashes_key}|{reference}|{grid}|{faces.boxes}|{pixels}",
                                   lambda: hash_picture(image, faces.boxes, reference, grid, self.scraped_side))
        return faces, hashes, hit and hashed

    def commit(self) -> None:
        self.db.commit()


# --- comparisons ---------------------------------------------------------------------------------

def _bits(rows: np.ndarray) -> np.ndarray:
    return np.unpackbits(rows, axis=1).astype(np.float32)


def min_distances(queries: list[np.ndarray], references: list[np.ndarray], chunk: int = 4096) -> np.ndarray:
    """The smallest Hamming distance between any hash of each query and any hash of each reference.

    (queries, references) int16; 999 where either side has no hash. One float32 matrix product
    per chunk (d = |a| + |b| - 2 a.b, exact for 256 bits).
    """
    result = np.full((len(queries), len(references)), 999, dtype=np.int16)
    ref_rows = [r for r in references if len(r)]
    if not ref_rows:
        return result
    ref_owner = np.concatenate([np.full(len(r), i) for i, r in enumerate(references) if len(r)])
    ref_starts = np.flatnonzero(np.r_[True, ref_owner[1:] != ref_owner[:-1]])
    ref_ids = ref_owner[ref_starts]
    r_bits = _bits(np.concatenate(ref_rows))
    r_pop = r_bits.sum(axis=1)
    owners = [i for i, q in enumerate(queries) if len(q)]
    rows = [queries[i] for i in owners]
    if not rows:
        return result
    q_owner = np.concatenate([np.full(len(queries[i]), i) for i in owners])
    q_all = np.concatenate(rows)
    for start in range(0, len(q_all), chunk):
        part = slice(start, start + chunk)
        qb = _bits(q_all[part])
        d = qb.sum(axis=1)[:, None] + r_pop[None, :] - 2 * (qb @ r_bits.T)
        per_ref = np.minimum.reduceat(d, ref_starts, axis=1)  # (chunk rows, refs with hashes)
        owner = q_owner[part]
        q_starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        per_query = np.minimum.reduceat(per_ref, q_starts, axis=0).astype(np.int16)
        ids = owner[q_starts]
        block = result[ids][:, ref_ids]
        result[np.ix_(ids, ref_ids)] = np.minimum(block, per_query)
    return result


def max_similarity(queries: list[np.ndarray], references: list[np.ndarray]) -> np.ndarray:
    result = np.full((len(queries), len(references)), -1.0, dtype=np.float32)
    ref_rows = [(i, r) for i, r in enumerate(references) if len(r)]
    ref_owner = np.concatenate([np.full(len(r), i) for i, r in ref_rows])
    r_all = np.concatenate([r for _, r in ref_rows])
    starts = np.flatnonzero(np.r_[True, ref_owner[1:] != ref_owner[:-1]])
    ids = ref_owner[starts]
    for q, vectors in enumerate(queries):
        if len(vectors):
            result[q, ids] = np.maximum.reduceat((vectors @ r_all.T).max(axis=0), starts)
    return result


# --- local features -----------------------------------------------------------------------------

def local_gallery(images: list[Image.Image]) -> tuple[FeatureGallery, list[float]]:
    """Every reference's features (and its mirror's) in one index; the seconds each took."""
    index, seconds = FeatureGallery(), []
    for owner, image in enumerate(images):
        t = time.perf_counter()
        index.add(owner, local_features.extract_reference(image))
        seconds.append(time.perf_counter() - t)
    return index, seconds


def local_matrix(index: FeatureGallery, queries: list[LocalFeatures], references: int,
                 skip_own: bool = False) -> tuple[np.ndarray, list[float]]:
    """(queries, references) inlier counts (0 where a reference was not verified); the seconds of each
    query. ``skip_own``: query i is reference i, left out of its own search."""
    result = np.zeros((len(queries), references), np.int16)
    seconds = []
    for q, features in enumerate(queries):
        t = time.perf_counter()
        for owner, count in index.scores(features, skip=q if skip_own else None).items():
            result[q, owner] = count
        seconds.append(time.perf_counter() - t)
    return result, seconds


# Pairs of LFW photos of different people that are crops of one photo (inspected by eye: LFW
# cropped one press photo around each person in it). The local features rightly match them: they
# are the same picture, so they are no false match to fit the threshold on.
SAME_PHOTO = {frozenset({"lfw/Tom_Daschle/Tom_Daschle_0009.jpg", "lfw/Trent_Lott/Trent_Lott_0010.jpg"})}


def fit_local_threshold(encoder, pictures: list[Picture], catalogue, sources: int) -> tuple[int, str]:
    """The inlier threshold, from people the measured set does not hold: the highest count an edited
    copy of one held-out person (or one of their originals) reaches against another held-out person's
    picture, plus one, and at least LEAST_MATCHES. Returns it with a line saying what it was fitted on."""
    began = time.perf_counter()
    index, _ = local_gallery([p.image for p in pictures])
    person = [p.person for p in pictures]
    firsts = [next(i for i, p in enumerate(pictures) if p.person == who) for who in dict.fromkeys(person)]
    chosen = firsts[:: max(1, len(firsts) // max(1, sources))][:sources]
    highest = {"other people": 0, "same person": 0}
    pairs = {"other people": 0, "same person": 0}

    def note(query_person: str, found: dict[int, int], own: int) -> None:
        for kind in highest:
            mine = [o for o in range(len(pictures))
                    if o != own and (person[o] == query_person) == (kind == "same person")
                    and frozenset({pictures[o].name, pictures[own].name}) not in SAME_PHOTO]
            pairs[kind] += len(mine)
            highest[kind] = max([highest[kind], *(found.get(o, 0) for o in mine)])

    originals, _ = local_matrix(index, [local_features.extract(p.image) for p in pictures], len(pictures), True)
    for i in range(len(pictures)):
        note(person[i], {o: int(n) for o, n in enumerate(originals[i]) if n}, i)
    copies = 0
    for source in chosen:
        image = pictures[source].image
        boxes = encode_faces(encoder, image, False).boxes
        for edit in catalogue:
            note(person[source], index.scores(local_features.extract(edit.apply(image, boxes))), source)
            copies += 1
    # Never under the matches a reference needs before RANSAC is tried: a lower count is not evidence.
    threshold = max(highest["other people"] + 1, local_features.LEAST_MATCHES)
    line = (f"Local features' threshold {threshold} inliers, fitted on {len(set(person))} held-out LFW people "
            f"({len(pictures)} photos, {len(pictures)} originals and {copies} edited copies of {len(chosen)} of them): "
            f"highest count against another person's picture {highest['other people']} in "
            f"{pairs['other people']:,} pairs, against another photo of the same person "
            f"{highest['same person']} in {pairs['same person']:,} pairs; left out: "
            f"{', '.join(' and '.join(sorted(pair)) for pair in SAME_PHOTO)} (crops of one photo) "
            f"({time.perf_counter() - began:.0f} s).")
    return threshold, line


# --- the run -------------------------------------------------------------------------------------

@dataclass
class Picture:
    name: str  # file name under the test data
    person: str
    image: Image.Image


def gallery() -> list[Picture]:
    pictures = [Picture(f"faces/{p.name}", p.stem, Image.open(p).convert("RGB"))
                for p in sorted((TESTDATA / "faces").glob("*.jpg"))]
    pictures += [Picture(f"lfw/{name}", name.split("/", 1)[0], Image.open(LFW / name).convert("RGB"))
                 for name in lfw_files()]
    return pictures


def backdrops() -> list[Image.Image]:
    """Other scenes for pastes and collages: frames of the shared videos (no face of the gallery)."""
    from mimamori.core.config import PipelineConfig
    from mimamori.media.decode import decode_media

    frames = []
    for clip in ("video_02.mp4", "video_01.mp4", "video.mp4"):
        media = decode_media((TESTDATA / "video" / clip).read_bytes(), "video/mp4", PipelineConfig(max_video_frames=4))
        frames.append(media.frames[len(media.frames) // 2].image)
    return frames


def run(args: argparse.Namespace) -> str:
    from mimamori.models.face_encoder import FaceEncoder

    settings = load_settings("local")
    settings.models.detector.fallbacks.upscale_below = args.upscale_below
    settings.models.detector.fallbacks.rotations = tuple(args.rotations)
    encoder = FaceEncoder(settings)
    threshold = encoder.spec.match_threshold
    faces_key = f"{CODE_VERSION}|{encoder.version}|{settings.models.detector.model_dump_json()}"
    hashes_key = (f"{CODE_VERSION}|{crop_hashes.MULTIPLES}|{crop_hashes.MAX_OUTSIDE}|{crop_hashes.WINDOW_SIDE}|"
                  f"{crop_hashes.MIN_FACE_SIDE}|{crop_hashes.MIN_QUALITY}|{crop_hashes.BORDER_TOLERANCE}|{GRID_SCALES}")
    scraped_side = settings.matching.scraped_pdq_max_side if args.scraped_pdq_side is None else args.scraped_pdq_side
    cache = Cache(cache_dir() / "matching-features.sqlite", faces_key, hashes_key, scraped_side)
    began = time.perf_counter()

    pictures = gallery()
    lfw_people = sorted({p.person for p in pictures if p.name.startswith("lfw/")})
    held_out = set(lfw_people[len(lfw_people) - args.fit_people:]) if args.fit_people else set()
    fit_pictures = [p for p in pictures if p.person in held_out]
    pictures = [p for p in pictures if p.person not in held_out]
    if args.gallery_limit:
        pictures = pictures[: args.gallery_limit]
    refs: list[tuple[Faces, Hashes]] = []
    computed = 0
    for number, picture in enumerate(pictures, 1):
        faces, hashes, hit = cache.get(encoder, picture.image, True, picture.name.startswith("lfw/"), args.grid)
        refs.append((faces, hashes))
        computed += not hit
        if number % 200 == 0:
            cache.commit()
            print(f"  references: {number}/{len(pictures)} ({time.perf_counter() - began:.0f} s)", flush=True)
    cache.commit()
    local_index, local_ref_seconds = local_gallery([p.image for p in pictures])
    print(f"references: {len(refs)} ({computed} computed) in {time.perf_counter() - began:.0f} s", flush=True)

    people = sorted({p.person for p in pictures if p.name.startswith("lfw/")})
    count = min(args.lfw_people, len(people))
    chosen = {people[round(i * (len(people) - 1) / max(1, count - 1))] for i in range(count)}
    sources = [i for i, p in enumerate(pictures) if p.name.startswith("faces/") and not args.lfw_only]
    seen: set[str] = set()
    for i, p in enumerate(pictures):
        if p.person in chosen and p.person not in seen:
            sources.append(i)
            seen.add(p.person)
    catalogue = edits.reupload_edits(backdrops())
    if args.local_inliers:
        local_limit, fit_line = args.local_inliers, f"Local features' threshold {args.local_inliers} inliers (given)."
    else:
        local_limit, fit_line = fit_local_threshold(encoder, fit_pictures, catalogue, args.fit_sources)
    print(fit_line, flush=True)
    queries: list[tuple[int, edits.Edit, Faces, Hashes]] = []
    q_local: list[LocalFeatures] = []
    local_extract_seconds: list[float] = []
    edit_began = time.perf_counter()
    for number, source in enumerate(sources, 1):
        picture = pictures[source]
        boxes = encode_faces(encoder, picture.image, False).boxes  # every face, for the edits that use them
        for edit in catalogue:
            copy = edit.apply(picture.image, boxes)
            faces, hashes, _ = cache.get(encoder, copy, False, False, args.grid)
            queries.append((source, edit, faces, hashes))
            t = time.perf_counter()
            q_local.append(local_features.extract(copy))
            local_extract_seconds.append(time.perf_counter() - t)
        cache.commit()
        if number % 10 == 0:
            print(f"  copies: {number}/{len(sources)} sources ({time.perf_counter() - edit_began:.0f} s)", flush=True)
    print(f"copies: {len(queries)} of {len(sources)} sources x {len(catalogue)} edits "
          f"in {time.perf_counter() - edit_began:.0f} s", flush=True)

    compare_began = time.perf_counter()
    q_faces = [f for _, _, f, _ in queries]
    q_hashes = [h for _, _, _, h in queries]
    r_faces = [f for f, _ in refs]
    r_hashes = [h for _, h in refs]
    face = max_similarity([f.vectors for f in q_faces], [f.vectors for f in r_faces])
    via_fallback = np.array([bool(f.fallback) and all(f.fallback) for f in q_faces])
    dist = {
        "pdq": min_distances([h.pdq for h in q_hashes], [h.pdq for h in r_hashes]),
        "trimmed": min_distances([h.trimmed for h in q_hashes], [h.pdq for h in r_hashes]),
        "windows": min_distances([h.windows for h in q_hashes], [h.windows for h in r_hashes]),
    }
    if args.grid:
        dist["grid"] = np.minimum(min_distances([h.grid for h in q_hashes], [h.pdq for h in r_hashes]),
                                  min_distances([h.pdq for h in q_hashes], [h.grid for h in r_hashes]))
    # The originals against each other (each pair both ways, counted once).
    ref_face = max_similarity([f.vectors for f in r_faces], [f.vectors for f in r_faces])
    ref_pdq = min_distances([h.pdq[:1] for h in r_hashes], [h.pdq for h in r_hashes])
    ref_windows = min_distances([h.windows[::8] for h in r_hashes], [h.windows for h in r_hashes])
    local, local_match_seconds = local_matrix(local_index, q_local, len(refs))
    ref_local, _ = local_matrix(local_index, [local_features.extract(p.image) for p in pictures], len(refs), True)
    ref_local = np.maximum(ref_local, ref_local.T)
    print(f"comparisons in {time.perf_counter() - compare_began:.0f} s", flush=True)

    query_source = np.array([s for s, _, _, _ in queries])
    person = np.array([p.person for p in pictures])
    rows = np.arange(len(queries))
    same_picture = query_source[:, None] == np.arange(len(refs))[None, :]
    same_person = (person[query_source][:, None] == person[None, :]) & ~same_picture
    other_person = ~(same_picture | same_person)

    pdq_limit, window_limit = args.pdq_distance, args.window_distance
    fired = {
        "face": face >= threshold,
        "face, no fallback": (face >= threshold) & ~via_fallback[:, None],
        "pdq": dist["pdq"] <= pdq_limit,
        "crop": (dist["trimmed"] <= pdq_limit) | (dist["windows"] <= window_limit),
    }
    fired["local"] = local >= local_limit
    fired["combined"] = fired["face"] | fired["pdq"] | fired["crop"] | fired["local"]
    names = ["face, no fallback", "face", "pdq", "crop", "local", "combined"]
    if args.grid:
        fired["grid"] = dist["grid"] <= pdq_limit
        fired["combined + grid"] = fired["combined"] | fired["grid"]
        names += ["grid", "combined + grid"]
    hashes_only = {"pdq": fired["pdq"], "crop": fired["crop"], "local": fired["local"],
                   "combined": fired["pdq"] | fired["crop"] | fired["local"]}
    if args.grid:
        hashes_only.update({"grid": fired["grid"], "combined + grid": hashes_only["combined"] | fired["grid"]})

    lines = [f"Command: `.venv/bin/python bench/matching.py {' '.join(sys.argv[1:])}` on "
             f"{time.strftime('%Y-%m-%d')}, {platform.machine()} CPU (2 cores), "
             f"Python {platform.python_version()}. Model `{encoder.version}`, face threshold {threshold} (cosine); "
             f"PDQ distance {pdq_limit} (whole and trimmed pictures; copies hashed scaled to fit {scraped_side} px, "
             f"as the pipeline hashes scraped pictures, 0: full size), window distance {window_limit} "
             f"(windows of {', '.join(f'{m}x' for m in crop_hashes.MULTIPLES)} the face's side); detector "
             f"fallbacks: upscale below {args.upscale_below} px, rotations {tuple(args.rotations)}; local features "
             f"at {local_limit} inliers ({local_features.FEATURES} ORB keypoints at <= {local_features.MAX_SIDE} px). "
             f"{len(refs)} references; {len(sources)} sources ({len(sources) - 5} LFW people's first photo and the "
             f"5 shared photos) x {len(catalogue)} edits = {len(queries)} copies; "
             f"{time.perf_counter() - began:.0f} s in all ({computed} references computed, the rest cached).", "",
             fit_line, ""]
    lines += ["Recall (share of copies that match their own source):", "",
              "| edit | family | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    by_family: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for edit in catalogue:
        mine = np.array([e.name == edit.name for _, e, _, _ in queries])
        cells = []
        for name in names:
            hit = fired[name][rows[mine], query_source[mine]]
            by_family[edit.family][name][0] += int(hit.sum())
            by_family[edit.family][name][1] += int(mine.sum())
            cells.append(f"{hit.mean():.2f}")
        lines.append(f"| {edit.name} | {edit.family} | " + " | ".join(cells) + " |")
    lines += ["", "| family | copies | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for family, counts in by_family.items():
        total = counts["face"][1]
        cells = [f"{counts[name][0] / total:.3f}" for name in names]
        cells[names.index("combined")] = f"**{cells[names.index('combined')]}**"
        lines.append(f"| {family} | {total} | " + " | ".join(cells) + " |")

    upper = np.triu(np.ones((len(refs), len(refs)), bool), 1)
    ref_person = person[:, None] == person[None, :]
    ref_fired = {"face": ref_face >= threshold, "pdq": ref_pdq <= pdq_limit, "crop": ref_windows <= window_limit,
                 "local": ref_local >= local_limit}
    ref_fired["combined"] = ref_fired["face"] | ref_fired["pdq"] | ref_fired["crop"] | ref_fired["local"]
    ref_hashes_only = {"pdq": ref_fired["pdq"], "crop": ref_fired["crop"], "local": ref_fired["local"],
                       "combined": ref_fired["pdq"] | ref_fired["crop"] | ref_fired["local"]}
    lines += ["", "False matches: pairs where the signal fired, of the pairs compared. Other photos of the same "
              "person count for the image-hash signals only (a face match there is the identity match it is "
              "meant to be; a hash match would claim a re-upload).", "",
              "| signal | copies vs other people's pictures | copies vs the same person's other photos | "
              "originals vs other people's | originals vs the same person's other photos |",
              "|---|---:|---:|---:|---:|"]
    for name in names:
        cells = [f"{int(fired[name][other_person].sum())} of {int(other_person.sum()):,}"]
        cells.append("(identity)" if name.startswith("face") else
                     f"{int(hashes_only[name][same_person].sum())} of {int(same_person.sum()):,}")
        key = "face" if name.startswith("face") else name
        if key in ref_fired:
            others, same = upper & ~ref_person, upper & ref_person
            cells.append(f"{int((ref_fired[key] & others).sum())} of {int(others.sum()):,}")
            cells.append("(identity)" if key == "face" else
                         f"{int((ref_hashes_only[key] & same).sum())} of {int(same.sum()):,}")
        else:
            cells += ["not measured", "not measured"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    lines += ["", "Hash distances: how far the thresholds sit from the closest pair of different pictures "
              "(copies vs every picture but their source, the same person's other photos included):", "",
              "| hash | threshold | smallest distance, different pictures | 0.1th percentile | "
              "copies vs source: median | copies within threshold |", "|---|---:|---:|---:|---:|---:|"]
    for name, limit in (("pdq", pdq_limit), ("trimmed", pdq_limit), ("windows", window_limit),
                        *((("grid", pdq_limit),) if args.grid else ())):
        d = dist[name]
        other = d[~same_picture]
        other = other[other < 999]
        own = d[rows, query_source]
        lines.append(f"| {name} | {limit} | {int(other.min()) if len(other) else '-'} | "
                     f"{np.percentile(other, 0.1) if len(other) else float('nan'):.0f} | "
                     f"{np.median(own[own < 999]) if (own < 999).any() else float('nan'):.0f} | "
                     f"{(own <= limit).mean():.3f} |")
    lines.append("")
    lines.append(f"Face: highest cosine of a copy against another person's picture {face[other_person].max():.3f}, "
                 f"of two originals of different people {ref_face[upper & ~ref_person].max():.3f} "
                 f"(threshold {threshold}).")
    lines.append(f"Local features: highest inlier count of a copy against another person's picture "
                 f"{int(local[other_person].max())}, against another photo of its own person "
                 f"{int(local[same_person].max()) if same_person.any() else 0}, of two originals of different people "
                 f"{int(ref_local[upper & ~ref_person].max())} (threshold {local_limit}); copies vs their source: "
                 f"median {np.median(local[rows, query_source]):.0f}.")

    cost: dict[str, list[float]] = defaultdict(list)
    qcost: dict[str, list[float]] = defaultdict(list)
    for faces, hashes in refs:
        cost["face"].append(faces.seconds)
        for k, v in hashes.seconds.items():
            cost[k].append(v)
    for faces, hashes in zip(q_faces, q_hashes, strict=True):
        qcost["face"].append(faces.seconds)
        for k, v in hashes.seconds.items():
            qcost[k].append(v)
    stored = {"face": np.mean([len(f.vectors) for f in r_faces]), "pdq": 8.0, "trim": 0.0,
              "windows": np.mean([len(h.windows) for h in r_hashes]), "grid": np.mean([len(h.grid) for h in r_hashes])}
    per_copy = {"face": np.mean([len(f.vectors) for f in q_faces]), "pdq": 1.0,
                "trim": np.mean([len(h.trimmed) for h in q_hashes]),
                "windows": np.mean([len(h.windows) for h in q_hashes]),
                "grid": np.mean([len(h.grid) for h in q_hashes])}
    lines += ["", "Cost per picture (mean ms on this machine; a reference hashes eight variants of each; local: a "
              "copy's keypoints and its search of every reference's by brute force, with RANSAC):", "",
              "| step | reference | copy | hashes (faces, keypoints) per reference | per copy |",
              "|---|---:|---:|---:|---:|"]
    cost["local"], qcost["local"] = local_ref_seconds, [a + b for a, b in zip(local_extract_seconds,
                                                                              local_match_seconds, strict=True)]
    stored["local"] = np.mean([len(s) for s in local_index.sets]) * len(local_index.sets) / max(1, len(refs))
    per_copy["local"] = np.mean([len(f) for f in q_local])
    for name in ("face", "pdq", "trim", "windows", "local", *(("grid",) if args.grid else ())):
        lines.append(f"| {name} | {1000 * np.mean(cost[name]):.1f} | {1000 * np.mean(qcost[name]):.1f} | "
                     f"{stored[name]:.1f} | {per_copy[name]:.1f} |")
    fallback_faces = sum(1 for f in q_faces if f.fallback and all(f.fallback))
    lines.append("")
    lines.append(f"Copies whose faces came only from a detection fallback: {fallback_faces} of {len(q_faces)}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw-people", type=int, default=60, help="LFW people whose first photo is a source")
    parser.add_argument("--pdq-distance", type=int, default=31)
    parser.add_argument("--scraped-pdq-side", type=int, default=None,
                        help="copies' PDQ from a picture scaled to fit this side (default: "
                             "matching.scraped_pdq_max_side; 0: the full picture)")
    parser.add_argument("--window-distance", type=int, default=crop_hashes.MATCH_DISTANCE)
    parser.add_argument("--local-inliers", type=int, default=0,
                        help="the local features' threshold (default: fitted on the --fit-people held out)")
    parser.add_argument("--fit-people", type=int, default=40,
                        help="LFW people (the last in name order) held out of the measured set to fit the local "
                             "features' threshold on")
    parser.add_argument("--fit-sources", type=int, default=10, help="held-out people whose first photo is edited")
    parser.add_argument("--grid", action="store_true", help="also measure the grid of overlapping regions")
    parser.add_argument("--upscale-below", type=int, default=0, help="models.detector.fallbacks.upscale_below")
    parser.add_argument("--rotations", type=int, nargs="*", default=[], help="models.detector.fallbacks.rotations")
    parser.add_argument("--gallery-limit", type=int, default=0,
                        help="only the first N pictures (the 5 shared photos, then LFW in name order, 10 a person)")
    parser.add_argument("--lfw-only", action="store_true", help="no shared photo among the sources (fills the cache)")
    parser.add_argument("--write", type=Path, help="replace the matching block of this markdown file")
    args = parser.parse_args(argv)
    text = run(args)
    print(text)
    if args.write:
        write_block(args.write, START, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
