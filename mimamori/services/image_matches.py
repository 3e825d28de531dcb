"""Matches by image hash: every scraped frame's PDQ against the reference hashes of watched cases.

The face watchlist (services/watchlist.py) finds a client by face; this finds the picture
itself, which is what survives a mosaic or a bar over the face, a face too small or too
blurred to detect, and, through the reference's eight dihedral hashes, a mirror or a 90°
rotation. Both run on the same batch in the pipeline's writer, and the decision is
``match_signals.combine``: a (case, media) pair is a match when the face gate or the hash
gate opens, and its evidence says which.

A pair the face path already matched is not matched twice: the PDQ evidence is added to that
match. Otherwise a match is recorded like a face match (same table, queue, audit and topic),
with ``face_id`` = the frame's PDQ row key (stores.image_hashes.pdq_key) and the frame's
thumbnail as its image (``image_key``, written by the pipeline before the match).

The crop-robust signal runs beside PDQ here: a scraped image's local features against the
watched cases' reference images (services/reference_features.py), and a (case, media) pair is
decided once on both scores, so a match says which of the two fired.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from mimamori.core.config import MatchingConfig, Settings
from mimamori.media.local_features import extract
from mimamori.media.pdq import PdqHash
from mimamori.services.match_signals import (
    Decision,
    PdqScore,
    Thresholds,
    combine,
    face_evidence,
    local_similarity,
    pdq_similarity,
)
from mimamori.services.reference_features import ReferenceFeatures, WatchedGallery
from mimamori.services.watchlist import Watchlist, record_matches
from mimamori.stores.cases import Match
from mimamori.stores.image_hashes import ReferenceHashes, ReferenceHit, pdq_key
from mimamori.stores.milvus import newest_write
from mimamori.stores.references import ReferenceMedia

HASH_MODEL_VERSION = "pdq"  # Match.model_version of a match found by image hash alone


def thumbnail_key(media_sha256: str, frame_ms: int) -> str:
    """Where the pipeline puts the frame a hash-only match shows (crops bucket), by content."""
    return f"pdq/{media_sha256[:2]}/{media_sha256}/{frame_ms}.jpg"


@dataclass(frozen=True)
class HashedMedia:
    """A newly indexed media item's frame hashes, with where it was seen."""

    media_sha256: str
    frames: list[tuple[int, PdqHash]]
    media_id: str
    source_url: str
    platform: str
    scraped_at: dt.datetime | None = None
    media_phash: str | None = None
    # (frame ms, picture) whose local features are compared with the reference images' (an image's
    # one frame; empty where the pictures are not at hand, as in a retro search)
    images: tuple[tuple[int, Image.Image], ...] = ()
    # Those pictures' scores, if computed ahead of the writer (transforms/local_scores.py)
    local: LocalScores | None = None


@dataclass(frozen=True)
class LocalScores:
    """A medium's local-feature scores against the watched cases' reference images: case -> (inliers,
    frame ms) for the cases with enough verified matches, valid where the gallery is built from
    ``built_from`` (services/reference_features.WatchedGallery)."""

    built_from: tuple[tuple[str, str, bool], ...]
    best: dict[str, tuple[int, int]]


@dataclass(frozen=True)
class HashCandidate:
    """A (case, media) pair whose decision says match, found by the hash of one of its frames."""

    case_id: str
    media_sha256: str
    frame_ms: int
    decision: Decision

    @property
    def face_id(self) -> int:
        return pdq_key(self.media_sha256, self.frame_ms)

    @property
    def image_key(self) -> str:
        return thumbnail_key(self.media_sha256, self.frame_ms)

    @property
    def similarity(self) -> float:
        if "pdq" in self.decision.fired or "crop" not in self.decision.scores:
            return pdq_similarity(int(self.decision.scores["pdq"]))
        threshold = self.decision.details.get("crop", {}).get("threshold") or 1
        return local_similarity(self.decision.scores["crop"], int(threshold))


def best_hits(frames: list[tuple[str, int, PdqHash]], hits: list[list[ReferenceHit]]
              ) -> dict[tuple[str, str], tuple[ReferenceHit, int, int]]:
    """(case, media sha256) -> (nearest reference hit, frame ms, the frame's quality), over all frames."""
    best: dict[tuple[str, str], tuple[ReferenceHit, int, int]] = {}
    for (sha, frame_ms, hashed), frame_hits in zip(frames, hits, strict=True):
        for hit in frame_hits:
            key = (hit.reference.case_id, sha)
            if key not in best or hit.distance < best[key][0].distance:
                best[key] = (hit, frame_ms, hashed.quality)
    return best


def picture_scores(item: HashedMedia, gallery: WatchedGallery) -> dict[str, tuple[int, int]]:
    """Case -> (the best inlier count of any of ``item``'s pictures against the case's reference
    images, that picture's frame ms), for the cases with enough verified matches."""
    best: dict[str, tuple[int, int]] = {}
    for frame_ms, image in item.images:
        for owner, inliers in gallery.index.scores(extract(image)).items():
            case_id = gallery.cases[owner]
            if inliers > best.get(case_id, (-1, 0))[0]:
                best[case_id] = (inliers, frame_ms)
    return best


def hash_thresholds(matching: MatchingConfig) -> Thresholds:
    """The configured gates of a decision by image hash (it has no face score to gate)."""
    return Thresholds(pdq_max_distance=matching.pdq_max_distance, pdq_min_quality=matching.pdq_min_quality,
                      crop_threshold=matching.local_min_inliers if matching.local_features else None)


class MediaWatchlist(Watchlist):
    """The face watchlist and the image-hash one, for the pipeline's writer (built in its setup)."""

    def __init__(self, settings: Settings, model_version: str, *, references: ReferenceHashes | None = None,
                 **stores: Any):
        """``references`` (and ``Watchlist``'s ``sessions``, ``enrolled``, ``producer``) replace the
        configured stores (tests: in memory)."""
        super().__init__(settings, model_version, **stores)
        self.matching = settings.matching
        self.references = references if references is not None else ReferenceHashes(settings)
        self.local = ReferenceFeatures(self.sessions, self.objects_factory, settings.minio.buckets.references.name
                                       ) if settings.matching.local_features else None

    def hash_candidates(self, media: list[HashedMedia], watched: dict[str, float] | None = None
                        ) -> list[HashCandidate]:
        """The (case, media) pairs the combined decision matches by their image signals.

        Only cases whose consent covers the watchlist (``watched``, as ``Watchlist.check`` takes
        it); each pair is decided once on its nearest PDQ hash and its best local-feature score.
        """
        watched = self.watched_cases() if watched is None else watched
        if not watched:
            return []
        pdq, local = self._pdq_scores(media, watched), self._local_scores(media, watched)
        candidates, thresholds = [], hash_thresholds(self.matching)
        for case_id, sha in sorted(set(pdq) | set(local)):
            score, (inliers, local_ms) = pdq.get((case_id, sha)), local.get((case_id, sha), (None, 0))
            decision = combine(pdq=score, crop=inliers, thresholds=thresholds)
            if decision.matched:
                frame_ms = score.frame_ms if score is not None and "pdq" in decision.fired else local_ms
                candidates.append(HashCandidate(case_id, sha, frame_ms, decision))
        return candidates

    def _pdq_scores(self, media: list[HashedMedia], watched: dict[str, float]) -> dict[tuple[str, str], PdqScore]:
        """(case, media) -> the nearest reference hash of any frame: one search of the reference
        collection for the batch, the watched cases' partitions only; frames under the quality floor
        are not asked."""
        floor = self.matching.pdq_min_quality
        frames = [(m.media_sha256, ms, h) for m in media for ms, h in m.frames if h.quality >= floor]
        if not frames:
            return {}
        # Read after the frames were written (the writer stores them first): an enrolment noted after
        # this read is not waited for; with search consent its retro search finds these frames
        # instead. What is left (acknowledged, not yet noted): docs/matching.md.
        with self.sessions() as session:
            written = session.scalars(select(ReferenceMedia.hashes_written_at).where(
                ReferenceMedia.case_id.in_(sorted(watched)))).all()
        # Not known (no row, or one from before its time was kept): every write up to now.
        written_by = newest_write(written, unknown_is_strong=True)
        hits = self.references.nearest([h.bits for _sha, _ms, h in frames], sorted(watched),
                                       self.matching.pdq_max_distance, self.matching.top_k, written_by)
        return {key: PdqScore(hit.distance, min(quality, hit.reference.hash.quality), hit.reference.variant, frame_ms)
                for key, (hit, frame_ms, quality) in best_hits(frames, hits).items()}

    def local_scores(self, item: HashedMedia, watched: dict[str, float]) -> LocalScores | None:
        """``item``'s local-feature scores against the reference images of the ``watched`` cases, for
        the writer to use (transforms/local_scores.py computes them ahead of it, off its path); None
        where the signal is off."""
        if self.local is None:
            return None
        gallery = self.local.gallery_for(sorted(watched))
        return LocalScores(gallery.built_from, picture_scores(item, gallery) if gallery.index.sets else {})

    def _local_scores(self, media: list[HashedMedia], watched: dict[str, float]
                      ) -> dict[tuple[str, str], tuple[int, int]]:
        """(case, media) -> (the best inlier count of any picture against the case's reference images,
        that picture's frame ms). Scores computed ahead against the same gallery are taken as they
        are; the others (none computed, or the references changed since) are computed here, and
        keypoints are extracted only when a watched case has reference images."""
        if self.local is None or not any(m.images for m in media):
            return {}
        gallery = self.local.gallery_for(sorted(watched))
        if not gallery.index.sets:
            return {}
        best: dict[tuple[str, str], tuple[int, int]] = {}
        for item in media:
            ahead = item.local is not None and item.local.built_from == gallery.built_from
            scores = item.local.best if ahead else picture_scores(item, gallery)
            best.update({(case_id, item.media_sha256): score for case_id, score in scores.items()})
        return best

    def record_hash_matches(self, candidates: list[HashCandidate], media: list[HashedMedia]) -> list[Match]:
        """Record what ``hash_candidates`` found (after the thumbnails are written); return the new matches.

        Idempotent: a pair already matched (by its face, or by this hash before) gets the PDQ
        evidence added to its match, and no second match.
        """
        by_sha = {m.media_sha256: m for m in media}
        new = record_hash_candidates(self.sessions, candidates, "stream", by_sha, thumbnails=True)
        self._announce_matches(new, lambda match: by_sha[match.media_sha256])
        return new


def record_hash_candidates(sessions: sessionmaker, candidates: list[HashCandidate], source: str,
                           media: dict[str, HashedMedia] | None = None, thumbnails: bool = False) -> list[Match]:
    """The candidates' matches: a (case, media) pair matched before gets the PDQ evidence added
    (``add_hash_evidence``), the others become matches; returns the new ones. ``media`` (sha256 ->
    where it was seen) gives their scrape time and pHash; ``thumbnails``: their frame thumbnails
    were written (``image_key``)."""
    if not candidates:
        return []
    added = add_hash_evidence(sessions, candidates)
    fresh = [c for c in candidates if (c.case_id, c.media_sha256) not in added]
    media = media or {}
    return record_matches(
        sessions, [(c.case_id, c.face_id, c.media_sha256, c.similarity) for c in fresh], HASH_MODEL_VERSION, source,
        {sha: m.scraped_at for sha, m in media.items() if m.scraped_at},
        {sha: m.media_phash for sha, m in media.items() if m.media_phash},
        signals={(c.case_id, c.face_id): c.decision.evidence() for c in fresh},
        image_keys={(c.case_id, c.face_id): c.image_key for c in fresh} if thumbnails else None)


def add_hash_evidence(sessions: sessionmaker, candidates: list[HashCandidate]) -> set[tuple[str, str]]:
    """Add each candidate's PDQ evidence to the matches its (case, media) already has; return the pairs
    that had one. A face match keeps its face evidence and gains "pdq" among the signals that fired."""
    wanted = {(c.case_id, c.media_sha256): c for c in candidates}
    found: set[tuple[str, str]] = set()
    with sessions.begin() as session:
        cases, shas = sorted({c.case_id for c in candidates}), sorted({c.media_sha256 for c in candidates})
        rows = session.scalars(select(Match).where(Match.case_id.in_(cases), Match.media_sha256.in_(shas)))
        for match in rows:
            candidate = wanted.get((match.case_id, match.media_sha256))
            if candidate is None:
                continue
            found.add((match.case_id, match.media_sha256))
            match.signals = merged_evidence(match.signals, match.similarity, candidate.decision)
    return found


def merged_evidence(existing: dict[str, Any] | None, similarity: float, decision: Decision) -> dict[str, Any]:
    """A match's evidence with a hash decision's added (an old match without evidence: a face match)."""
    base = existing or face_evidence(similarity)
    evidence = decision.evidence()
    fired = list(dict.fromkeys([*base.get("fired", []), *evidence["fired"]]))
    merged = {"fired": fired, "scores": {**base.get("scores", {}), **evidence["scores"]}}
    details = {**base.get("details", {}), **evidence.get("details", {})}
    if details:
        merged["details"] = details
    return merged
