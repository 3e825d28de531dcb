"""The one match decision: face similarity, image-hash distance and the crop-robust signal, combined.

Each signal has its own gate, and a candidate is a match when any gate opens: an edit that
defeats one signal (a mosaic over the face defeats the face path, a 90° rotation or a tight
crop defeats the plain image hash) is caught by another. What fired, with each score, is the
match's evidence (``Decision.evidence()``, the ``signals`` column of a match) so the reviewer
sees why it matched. The image-hash watchlist and the retro search of new references decide
with this function; the face watchlist gates the face score itself (the case threshold, or the
case's head) and records ``face_evidence``; ``bench/matching.py`` measures each gate and their OR.
``crop`` is the crop-robust signal: local features verified by geometry
(mimamori.media.local_features), which catches tight crops, pastes and mosaics over the face.

Scores: ``face`` is the cosine similarity to the nearest enrolled face of the case (higher is
closer, fires at or above the case's threshold); ``pdq`` the Hamming distance to the nearest
reference hash (lower is closer, fires at or below ``pdq_max_distance`` when both hashes have
at least ``pdq_min_quality``); ``crop`` the crop-robust signal's score, the keypoint matches one
similarity transform explains (higher is closer, fires at or above ``crop_threshold``; None
there: the signal is off).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mimamori.media.pdq import DEFAULT_MAX_DISTANCE, DEFAULT_MIN_QUALITY, PDQ_BITS

SIGNALS = ("face", "pdq", "crop")


@dataclass(frozen=True)
class Thresholds:
    face: float | None = None  # the case's threshold for the model in use; None: face signal off
    pdq_max_distance: int = DEFAULT_MAX_DISTANCE
    pdq_min_quality: int = DEFAULT_MIN_QUALITY
    crop_threshold: float | None = None


@dataclass(frozen=True)
class PdqScore:
    """The nearest reference hash: its distance, the lower quality of the two hashes, and where."""

    distance: int
    quality: int
    variant: str = "original"  # which dihedral variant of the reference (mimamori.media.pdq.DIHEDRAL)
    frame_ms: int = 0  # the scraped frame (0 for an image)


@dataclass(frozen=True)
class Decision:
    matched: bool
    fired: tuple[str, ...]  # the signals whose gate opened, in SIGNALS order
    scores: dict[str, float]  # every signal that was measured, fired or not
    details: dict[str, Any] = field(default_factory=dict)  # e.g. the PDQ variant and frame

    def evidence(self) -> dict[str, Any]:
        """What the match row keeps (JSON): which signals fired and every score measured."""
        return {"fired": list(self.fired), "scores": dict(self.scores), **({"details": self.details}
                                                                            if self.details else {})}


def combine(*, face: float | None = None, pdq: PdqScore | None = None, crop: float | None = None,
            thresholds: Thresholds) -> Decision:
    """The decision for one (case, media) candidate from the signals that were measured (None: not)."""
    fired, scores, details = [], {}, {}
    if face is not None:
        scores["face"] = round(float(face), 4)
        if thresholds.face is not None and face >= thresholds.face:
            fired.append("face")
    if pdq is not None:
        scores["pdq"] = int(pdq.distance)
        details["pdq"] = {"quality": int(pdq.quality), "variant": pdq.variant, "frame_ms": int(pdq.frame_ms)}
        if pdq.distance <= thresholds.pdq_max_distance and pdq.quality >= thresholds.pdq_min_quality:
            fired.append("pdq")
    if crop is not None:
        scores["crop"] = round(float(crop), 4)
        details["crop"] = {"threshold": thresholds.crop_threshold}
        if thresholds.crop_threshold is not None and crop >= thresholds.crop_threshold:
            fired.append("crop")
    return Decision(bool(fired), tuple(fired), scores, details)


def pdq_similarity(distance: int) -> float:
    """A PDQ distance on the 0-1 scale a match's ``similarity`` column holds (1: the same bits).

    Only for ordering a queue: a hash match's evidence keeps the distance itself.
    """
    return round(1.0 - distance / PDQ_BITS, 4)


def local_similarity(inliers: float, threshold: int) -> float:
    """An inlier count on the 0-1 scale of ``similarity`` (0.5 at the threshold, towards 1 above it).

    Only for ordering a queue: the evidence keeps the count itself.
    """
    return round(inliers / (inliers + max(1, threshold)), 4)


def summary(signals: dict[str, Any] | None, similarity: float) -> str:
    """The reviewer's line, e.g. "face 0.71 / PDQ distance 12" (a match without evidence: a face match)."""
    if not signals:
        return f"face {similarity:.2f}"
    scores, fired = signals.get("scores", {}), signals.get("fired", [])
    parts = []
    for name in fired:
        if name == "face":
            parts.append(f"face {scores.get('face', similarity):.2f}")
        elif name == "pdq":
            variant = signals.get("details", {}).get("pdq", {}).get("variant", "original")
            rotated = "" if variant == "original" else f" ({variant.replace('_', ' ')})"
            parts.append(f"PDQ distance {int(scores.get('pdq', 0))}{rotated}")
        elif name == "crop":
            parts.append(f"{int(scores.get('crop', 0))} keypoints in place")
        else:
            parts.append(f"{name} {scores.get(name, 0):.2f}")
    return " / ".join(parts) if parts else f"face {similarity:.2f}"


def face_evidence(similarity: float) -> dict[str, Any]:
    """The evidence of a match the face signal made (above the case's threshold when it was recorded)."""
    return {"fired": ["face"], "scores": {"face": round(float(similarity), 4)}}
