"""A per-case head on fixed face embeddings: the client's template, adapted by reviewers' decisions.

Candidates of a case are re-scored with one unit vector ``w`` per case (a linear head on the base
model's L2-normalised vectors), so nothing in the shared index is ever embedded again: the score of
an indexed face is ``w . x``, on the same cosine scale as the base similarity.

``w`` starts at the prototype of the case's positives (the normalised mean of its enrolled faces and
confirmed matches: a prototype scores different photos of a person better than the best single
photo, see docs/quality.md) and moves by a small correction ``d`` learned with a logistic loss
around the case threshold: positives above it, hard negatives (the nearest faces of other people in
the index) and rejected matches below it, with an L2 pull of ``d`` towards zero. This is the
exemplar-SVM / one-shot-similarity idea (a discriminative template per identity against a fixed
negative set; Malisiewicz et al. 2011, Wolf, Hassner and Taigman 2009), anchored at the prototype
because three to five positives cannot support a free linear model in 128 dimensions (a free one,
and exemplar-LDA with a whitened background, both scored worse than the prototype on LFW).

The head may lower the case's threshold, never raise it, and only by what held-out negatives allow:
every other hard negative is kept out of training and calibrates it. The effective threshold is
just above the highest head score of those held-out negatives and of every rejected face (plus a
margin), clipped to ``[base_threshold - max_lowering, base_threshold]``. A case with close
look-alikes in the index keeps its threshold; one whose neighbours are far gets a lower one.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

FORMAT = "mimamori-case-head/v1"


@dataclass(frozen=True)
class HeadSettings:
    max_lowering: float = 0.02  # how far under the case threshold the head may accept a face
    margin: float = 0.03  # the effective threshold stays this far above every held-out negative
    l2: float = 10.0  # pull of the correction towards the prototype
    temperature: float = 0.02  # width of the logistic loss, in cosine units
    steps: int = 200
    learning_rate: float = 1e-3
    reject_weight: float = 5.0  # a reviewer's reject counts as this many hard negatives


@dataclass(frozen=True)
class CaseHead:
    weights: np.ndarray  # unit vector in the base embedding space
    threshold: float  # effective threshold on the head's score
    floor: float  # base similarity under which the head accepts nothing (base threshold - max lowering)

    def score(self, vectors: np.ndarray) -> np.ndarray:
        """The head's score of each (L2-normalised) base vector, on the cosine scale."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != len(self.weights):
            raise ValueError(f"expected vectors of dimension {len(self.weights)}, got shape {vectors.shape}")
        return vectors @ self.weights

    def accepts(self, head_score: float, base_similarity: float) -> bool:
        """The head's own decision: confident (at or above its threshold), within the lowering allowed."""
        return head_score >= self.threshold and base_similarity >= self.floor

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, format=np.array(FORMAT), weights=self.weights.astype(np.float32),
                 threshold=np.float64(self.threshold), floor=np.float64(self.floor))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> CaseHead:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            if str(stored["format"]) != FORMAT:
                raise ValueError(f"not a case head of format {FORMAT}: {stored['format']}")
            return cls(stored["weights"].astype(np.float32), float(stored["threshold"]), float(stored["floor"]))


@dataclass(frozen=True)
class TrainingReport:
    """What a training saw and decided (audited; no vector in it)."""

    positives: int
    negatives: int  # hard negatives trained on
    calibration: int  # hard negatives held out to set the threshold
    rejected: int
    base_threshold: float
    threshold: float
    hardest_negative: float | None  # highest head score among held-out negatives and rejects
    shift: float  # cosine between the head and the plain prototype (1: no correction)

    def to_dict(self) -> dict[str, float | int | None]:
        return {key: (round(value, 4) if isinstance(value, float) else value) for key, value in vars(self).items()}


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        raise ValueError("the positives cancel out: no prototype")
    return vector / norm


def prototype_of(positives: np.ndarray) -> np.ndarray:
    """The normalised mean of a case's positives: where its head starts (and its hard negatives are found)."""
    return _unit(np.asarray(positives, dtype=np.float64).mean(axis=0))


def _rows(vectors: np.ndarray | None, dimension: int) -> np.ndarray:
    if vectors is None or len(vectors) == 0:
        return np.zeros((0, dimension))
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[1] != dimension:
        raise ValueError(f"expected vectors of dimension {dimension}, got shape {vectors.shape}")
    return vectors


def train_case_head(positives: np.ndarray, negatives: np.ndarray, rejected: np.ndarray | None = None, *,
                    base_threshold: float, settings: HeadSettings = HeadSettings()) -> tuple[CaseHead, TrainingReport]:
    """Train a case's head (deterministic: same inputs, same head).

    ``positives``: enrolled faces and confirmed matches; ``negatives``: hard negatives from the index
    (other people's faces nearest the case); ``rejected``: faces of matches a reviewer rejected.
    """
    positives = np.asarray(positives, dtype=np.float64)
    if positives.ndim != 2 or len(positives) == 0:
        raise ValueError("a case head needs at least one positive")
    dimension = positives.shape[1]
    negatives, rejected = _rows(negatives, dimension), _rows(rejected, dimension)
    prototype = prototype_of(positives)
    # Hard negatives by rank: even ranks train, odd ranks calibrate (both sets equally hard).
    order = np.argsort(-(negatives @ prototype), kind="stable")
    train, held_out = negatives[order[0::2]], negatives[order[1::2]]

    features = np.vstack([positives, rejected, train])
    labels = np.r_[np.ones(len(positives)), np.zeros(len(rejected) + len(train))]
    # Positives weigh as much as all negatives together; a reject as several hard negatives.
    negative_mass = max(len(train) + settings.reject_weight * len(rejected), 1.0)
    weights = np.r_[np.full(len(positives), negative_mass / len(positives)),
                    np.full(len(rejected), settings.reject_weight), np.ones(len(train))]
    correction = np.zeros(dimension)
    t = settings.temperature
    for _ in range(settings.steps):
        margin = (features @ (prototype + correction) - base_threshold) / t
        probability = 1.0 / (1.0 + np.exp(-np.clip(margin, -50, 50)))
        gradient = features.T @ ((probability - labels) * weights / t) / weights.sum() + settings.l2 * correction
        correction -= settings.learning_rate * gradient
    head_weights = _unit(prototype + correction).astype(np.float32)

    floor = base_threshold - settings.max_lowering
    scored = np.r_[held_out @ head_weights, rejected @ head_weights]
    hardest = float(scored.max()) if len(scored) else None
    # Nothing to calibrate on: no lowering.
    threshold = base_threshold if hardest is None else float(np.clip(hardest + settings.margin, floor, base_threshold))
    head = CaseHead(head_weights, threshold, floor)
    report = TrainingReport(len(positives), len(train), len(held_out), len(rejected), base_threshold, threshold,
                            hardest, float(head_weights @ prototype))
    return head, report
