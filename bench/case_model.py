"""Does the per-case head find *different* photos of a client better than the base similarity?

LFW (../shared/testdata/lfw: 158 people, 10 photos each), vectors from the configured detect ->
align -> embed path, cached (bench/_cache.py). The people are split into two folds; each fold in
turn holds the cases, the other is the shared index the cases' hard negatives come from:

- a case enrols its person's photos 1-3; photos 4-5 are the "reviewer split": they are confirmed
  as matches (new positives); the index faces the base rule shows a reviewer (base similarity at
  or above the case threshold) are rejected (hard negatives with a reviewer's label), the other
  nearest index faces are unlabelled hard negatives, as in services/case_models.py; photos 6-10
  are held out, never used for anything but the genuine comparisons below;
- impostor comparisons: every case against the held-out photos of every other case of its fold
  (people who are never in the index, so never a training negative).

Systems: "today" (the watchlist's rule: best cosine over the enrolled photos), "prototype" (the
mean of enrolled and confirmed faces: what the head starts from, with no negative), "head before
decisions" (enrolled faces and hard negatives only) and "head" (after the reviewer decisions).

Reported, on held-out photos only: (1) TAR at FMR 1e-3 and 1e-4, and at the FMR today's rule has
at the case threshold, each threshold fitted on the *other* fold's comparisons and applied to this
fold (the realised FMR is shown beside it); (2) the deployed decision, with no fitted threshold
at all: a match when base >= the case threshold, or when the head accepts (its score at or above
its per-case effective threshold, base at or above the floor).

    .venv/bin/python bench/case_model.py [--write docs/quality.md]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._cache import lfw_faces, write_block
from mimamori.models.case_head import HeadSettings, prototype_of, train_case_head
from mimamori.models.registry import embedder_spec

START, END = "<!-- case-model:start -->", "<!-- case-model:end -->"
ENROLLED, CONFIRMED, HELD_OUT = slice(0, 3), slice(3, 5), slice(5, 10)
HARD_NEGATIVES = 400  # nearest index faces a case trains and calibrates on (services/case_models.py's default)


@dataclass
class Scores:
    genuine: list[np.ndarray]
    impostor: list[np.ndarray]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.genuine), np.concatenate(self.impostor)


def fold_scores(vectors: np.ndarray, by_person: dict[str, np.ndarray], cases: list[str], index: list[str],
                threshold: float, settings: HeadSettings) -> dict[str, Scores | list]:
    """Scores of every system on this fold's held-out photos (and the deployed decisions)."""
    index_vectors = vectors[np.concatenate([by_person[p] for p in index])]
    systems = ("today", "prototype", "head before decisions", "head")
    scores = {name: Scores([], []) for name in systems}
    decided = {"today": Scores([], []), "deployed": Scores([], [])}
    heads, lowered = {}, []
    for person in cases:
        rows = by_person[person]
        enrolled, confirmed = vectors[rows[ENROLLED]], vectors[rows[CONFIRMED]]
        positives = np.vstack([enrolled, confirmed])
        base = (index_vectors @ enrolled.T).max(axis=1)
        nearest = np.argsort(-(index_vectors @ prototype_of(enrolled)))
        nearest = nearest[:HARD_NEGATIVES]
        # What today's rule shows a reviewer (all other people here), rejected; the rest stays unlabelled
        # and, as in services/case_models.py, is taken for other people.
        shown = nearest[base[nearest] >= threshold]
        unlabelled = nearest[base[nearest] < threshold]
        first, _ = train_case_head(enrolled, index_vectors[nearest], base_threshold=threshold, settings=settings)
        head, report = train_case_head(positives, index_vectors[unlabelled], index_vectors[shown],
                                       base_threshold=threshold, settings=settings)
        prototype = prototype_of(positives)
        heads[person] = (enrolled, prototype, first, head)
        lowered.append(threshold - report.threshold)
    for person in cases:
        enrolled, prototype, first, head = heads[person]
        for other in cases:
            held = vectors[by_person[other][HELD_OUT]]
            base = (held @ enrolled.T).max(axis=1)
            head_scores = head.score(held)
            values = {"today": base, "prototype": held @ prototype, "head before decisions": first.score(held),
                      "head": head_scores}
            deployed = np.array([b >= threshold or head.accepts(h, b) for b, h in zip(base, head_scores, strict=True)])
            side = "genuine" if other == person else "impostor"
            for name, value in values.items():
                getattr(scores[name], side).append(value)
            getattr(decided["today"], side).append(base >= threshold)
            getattr(decided["deployed"], side).append(deployed)
    return {"scores": scores, "decided": decided, "lowered": lowered}


def threshold_at(impostor: np.ndarray, fmr: float) -> float:
    """The lowest threshold whose false-match rate on ``impostor`` is at most ``fmr``."""
    ordered = np.sort(impostor)[::-1]
    allowed = int(np.floor(fmr * len(ordered)))
    return float(np.nextafter(ordered[allowed], np.inf)) if allowed < len(ordered) else float(ordered[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="dlib-resnet")
    parser.add_argument("--write", type=Path, help="replace the case-model block of this markdown file")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    faces = lfw_faces(args.model)
    threshold = embedder_spec(args.model).match_threshold
    settings = HeadSettings()
    by_person = {p: rows for p, rows in faces.by_person().items() if len(rows) >= 10}
    people = sorted(by_person)
    folds = [people[0::2], people[1::2]]
    results = [fold_scores(faces.vectors, by_person, folds[i], folds[1 - i], threshold, settings) for i in (0, 1)]
    seconds = time.perf_counter() - began

    systems = list(results[0]["scores"])
    today_fmr = [float(np.mean(results[i]["scores"]["today"].arrays()[1] >= threshold)) for i in (0, 1)]
    targets = [("1e-3", [1e-3, 1e-3]), ("1e-4", [1e-4, 1e-4]),
               ("today's at the case threshold", today_fmr[::-1])]  # each fold fits on the other's FMR
    genuine_n = sum(len(results[i]["scores"]["today"].arrays()[0]) for i in (0, 1))
    impostor_n = sum(len(results[i]["scores"]["today"].arrays()[1]) for i in (0, 1))
    lines = [f"Command: `.venv/bin/python bench/case_model.py --write docs/quality.md` on {time.strftime('%Y-%m-%d')}, "
             f"{platform.machine()} CPU (shared, loaded machine), {seconds:.0f} s with cached vectors; model "
             f"`{faces.model_version}`, case threshold {threshold}; {len(faces.files)} LFW photos of "
             f"{len(by_person)} people ({faces.missed} without a face); two folds of {len(folds[0])} and "
             f"{len(folds[1])} cases; **{genuine_n} genuine and {impostor_n} impostor comparisons**, all on "
             f"held-out photos.", "",
             "TAR (FMR realised on held-out impostors), threshold fitted on the other fold:", "",
             "| system | " + " | ".join(f"FMR {name}" for name, _ in targets) + " |",
             "|---|" + "---:|" * len(targets)]
    for system in systems:
        cells = []
        for _name, fmrs in targets:
            tar_hits = fm_hits = 0
            for i in (0, 1):
                fitted = threshold_at(results[1 - i]["scores"][system].arrays()[1], fmrs[i])
                genuine, impostor = results[i]["scores"][system].arrays()
                tar_hits += int((genuine >= fitted).sum())
                fm_hits += int((impostor >= fitted).sum())
            cells.append(f"{tar_hits / genuine_n:.4f} ({fm_hits / impostor_n:.1e})")
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    lines += ["", "Deployed decision (no fitted threshold: the case threshold, and each head's own effective "
                  "threshold):", "", "| decision | TAR | true / genuine | FMR | false / impostor |",
              "|---|---:|---:|---:|---:|"]
    for name in ("today", "deployed"):
        genuine = np.concatenate([np.concatenate(results[i]["decided"][name].genuine) for i in (0, 1)])
        impostor = np.concatenate([np.concatenate(results[i]["decided"][name].impostor) for i in (0, 1)])
        label = "today: base >= threshold" if name == "today" else "base >= threshold, or the head accepts"
        lines.append(f"| {label} | {genuine.mean():.4f} | {genuine.sum()} / {len(genuine)} | {impostor.mean():.1e} | "
                     f"{impostor.sum()} / {len(impostor)} |")
    lowered = np.concatenate([results[i]["lowered"] for i in (0, 1)])
    lines += ["", f"Effective threshold lowered in {int((lowered > 1e-9).sum())} of {len(lowered)} cases "
                  f"(by {lowered.mean():.4f} on average, at most {lowered.max():.4f}; allowed "
                  f"{settings.max_lowering}).", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_block(args.write, START, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
