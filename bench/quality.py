"""Match quality of each embedder: re-upload recall per edit, and false matches.

For every embedder that has weights here, through the real detect -> align -> embed path
(models.face_encoder, the pipeline's own functions):
- enrol every face of the shared photos (../shared/testdata/faces);
- make each edit of mimamori.edits.EDITS of each photo, find its faces, and count a source
  face as found when some face of the edited copy has it as its nearest enrolled face with
  a similarity at or above the model's match threshold;
- count false matches: pairs of different people (enrolled vs enrolled, and every edited
  face vs every enrolled face of another person) at or above the threshold.

Run (under 1.5 minutes per model on a 2-core CPU):

    .venv/bin/python bench/quality.py --write docs/quality.md

``--write`` replaces the results block of that file and keeps the rest of it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mimamori.core.config import EmbedderConfig, load_settings
from mimamori.models.embedders import weights_file
from mimamori.models.registry import EMBEDDERS
from tests.support import edits

TESTDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata"
START, END = "<!-- results:start -->", "<!-- results:end -->"


@dataclass
class ModelResult:
    model: str
    version: str
    threshold: float
    enrolled: int
    found: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    expected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    misattributed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    same_person: list[float] = field(default_factory=list)  # best similarity of a source face in each edit
    different_people: list[float] = field(default_factory=list)
    enrolled_pairs: list[float] = field(default_factory=list)
    seconds: float = 0.0


def measure(model: str, photos: dict[str, Image.Image]) -> ModelResult:
    from mimamori.models.face_encoder import FaceEncoder

    began = time.perf_counter()
    settings = load_settings("local")
    encoder = FaceEncoder(settings, EmbedderConfig(name=model))
    threshold = encoder.spec.match_threshold

    # Enrol: every face of every photo is its own person.
    gallery, owners, boxes = [], [], {}
    for name, photo in photos.items():
        faces = encoder.encode(photo)
        boxes[name] = [tuple(face.detection.box) for face in faces]
        for face in faces:
            gallery.append(face.vector)
            owners.append(name)
    enrolled = np.stack(gallery)
    result = ModelResult(model, encoder.version, threshold, len(gallery))
    pairwise = enrolled @ enrolled.T
    result.enrolled_pairs = [float(pairwise[i, j]) for i in range(len(gallery)) for j in range(i + 1, len(gallery))]

    for edit in edits.EDITS:
        for name, photo in photos.items():
            sources = [i for i, owner in enumerate(owners) if owner == name]
            result.expected[edit.name] += len(sources)
            faces = encoder.encode(edit.apply(photo, boxes[name]))
            if not faces:
                continue
            similarity = np.stack([face.vector for face in faces]) @ enrolled.T
            nearest = similarity.argmax(axis=1)
            for s in sources:
                result.same_person.append(float(similarity[:, s].max()))
                if any(nearest[f] == s and similarity[f, s] >= threshold for f in range(len(faces))):
                    result.found[edit.name] += 1
            for f in range(len(faces)):
                # Which source this edited face is: its most similar face of this photo.
                own = max(sources, key=lambda s, f=f: similarity[f, s])
                others = [g for g in range(len(owners)) if g != own]
                result.different_people.extend(float(similarity[f, g]) for g in others)
                if nearest[f] != own and similarity[f, nearest[f]] >= threshold:
                    result.misattributed[edit.name] += 1
    result.seconds = time.perf_counter() - began
    return result


def report(result: ModelResult) -> str:
    t = result.threshold
    lines = [f"### {result.model}", "",
             f"Model version `{result.version}`; match threshold (cosine) {t}; {result.enrolled} enrolled faces; "
             f"measured in {result.seconds:.0f} s.", "",
             "| edit | re-upload recall | found / faces | nearest is someone else, above threshold |",
             "|---|---:|---:|---:|"]
    families: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for edit in edits.EDITS:
        found, expected = result.found[edit.name], result.expected[edit.name]
        families[edit.family][0] += found
        families[edit.family][1] += expected
        lines.append(f"| {edit.name} | {found / expected:.3f} | {found} / {expected} | "
                     f"{result.misattributed[edit.name]} |")
    lines += ["", "| edit family | recall |", "|---|---:|"]
    lines += [f"| {family} | {found / expected:.3f} |" for family, (found, expected) in families.items()]
    same, diff = np.array(result.same_person), np.array(result.different_people)
    pairs = np.array(result.enrolled_pairs)
    lines += [
        "",
        f"- False matches, enrolled faces of different people: {(pairs >= t).sum()} of {len(pairs)} pairs "
        f"({(pairs >= t).mean():.4f}); highest similarity {pairs.max():.3f}.",
        f"- False matches, edited faces vs enrolled faces of other people: {(diff >= t).sum()} of {len(diff)} "
        f"pairs ({(diff >= t).mean():.4f}); highest {diff.max():.3f}, 99th percentile "
        f"{np.percentile(diff, 99):.3f}.",
        f"- Same person (a source face vs its best face in an edited copy): median {np.median(same):.3f}, "
        f"5th percentile {np.percentile(same, 5):.3f}, lowest {same.min():.3f} "
        f"(0 where no face was detected in the copy).",
        "",
    ]
    return "\n".join(lines)


def write_results(path: Path, text: str) -> None:
    document = path.read_text() if path.exists() else f"# Match quality\n\n{START}\n{END}\n"
    if START not in document or END not in document:
        raise SystemExit(f"{path} has no results block ({START} ... {END})")
    head, rest = document.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", choices=sorted(EMBEDDERS),
                        help="embedder to measure (repeatable); default: every one with weights here")
    parser.add_argument("--write", type=Path, help="replace the results block of this markdown file")
    args = parser.parse_args(argv)

    photos = {p.stem: Image.open(p).convert("RGB") for p in sorted((TESTDATA / "faces").glob("*.jpg"))}
    if not photos:
        raise SystemExit(f"no photos in {TESTDATA / 'faces'}")
    sections = []
    models = args.model or list(EMBEDDERS)
    for model in models:
        if weights_file(EmbedderConfig(name=model)) is None:
            note = (f"### {model}\n\nNot measured: no weights here ({EMBEDDERS[model].weights_hint}). "
                    "A randomly initialised network would only measure noise.\n")
            print(note)
            sections.append(note)
            continue
        section = report(measure(model, photos))
        print(section, flush=True)
        sections.append(section)
    header = (f"Command: `.venv/bin/python bench/quality.py --write docs/quality.md` on "
              f"{time.strftime('%Y-%m-%d')}, {platform.machine()} CPU, Python {platform.python_version()}; "
              f"{len(photos)} photos from `../shared/testdata/faces`, {len(edits.EDITS)} edits.\n")
    if args.write:
        write_results(args.write, header + "\n" + "\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
