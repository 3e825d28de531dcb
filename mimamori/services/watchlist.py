"""The watchlist: every newly indexed face against the enrolled faces of open cases.

The indexed-media writer hands each batch of faces it has just written to ``Watchlist.check``:
one batched search of the (small) enrolled collection, then, for each case whose consent
covers the watchlist and whose threshold the similarity reaches, a match row with status
``pending_review`` in the case database and an event on the ``matches`` topic. A match is
keyed by (case, face), so a replay or a retry never duplicates it. A re-upload of media
already matched is not a new match: ``link_sightings`` counts it on the existing match and
announces it on the topic (the sightings themselves are in Milvus, keyed by the media).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from mimamori.core import metrics
from mimamori.core.config import Settings
from mimamori.models.case_head import CaseHead
from mimamori.models.registry import embedder_spec
from mimamori.services.case_heads import HeadCache
from mimamori.services.match_signals import face_evidence
from mimamori.stores.cases import (
    Case,
    Consent,
    Match,
    case_threshold,
    consent_in_force,
    insert_new,
    open_database,
    utcnow,
)
from mimamori.stores.enrolled import EnrolledFaces
from mimamori.stores.objects import object_client
from mimamori.streams.events import match_json
from mimamori.streams.producer import shared_producer

# (case id, face id, media sha256, similarity)
Candidate = tuple[str, int, str, float]


def record_matches(sessions: sessionmaker, candidates: Iterable[Candidate], model_version: str, source: str,
                   scraped_at: dict[str, dt.datetime] | None = None,
                   media_phash: dict[str, str] | None = None,
                   signals: dict[tuple[str, int], dict[str, Any]] | None = None,
                   image_keys: dict[tuple[str, int], str] | None = None,
                   case_scores: dict[tuple[str, int], tuple[float, int]] | None = None) -> list[Match]:
    """Insert matches that do not exist yet (unique per case and face); return the new ones.

    ``media_phash`` (media sha256 -> 16 hex digits) lets the review queue cluster near-duplicates.
    ``signals`` ((case, face) -> Decision.evidence()) is the match's evidence, a face match's by
    default; ``image_keys`` the frame thumbnail of a match found by an image hash alone.
    ``case_scores`` ((case, face) -> (score, version)): the case's head's score, kept beside the base
    similarity (services/case_models.py).
    """
    candidates = list(candidates)
    if not candidates:
        return []
    scraped_at, media_phash = scraped_at or {}, media_phash or {}
    signals, image_keys, case_scores = signals or {}, image_keys or {}, case_scores or {}
    with sessions.begin() as session:
        new_ids = []
        for case_id, face_id, sha, similarity in candidates:
            case_score, case_model_version = case_scores.get((case_id, face_id), (None, None))
            inserted = insert_new(session, Match, dict(
                case_id=case_id, face_id=face_id, media_sha256=sha, model_version=model_version,
                similarity=similarity, source=source, status="pending_review", created_at=utcnow(),
                scraped_at=scraped_at.get(sha), media_phash=media_phash.get(sha),
                signals=signals.get((case_id, face_id)) or face_evidence(similarity),
                image_key=image_keys.get((case_id, face_id)),
                case_score=case_score, case_model_version=case_model_version,
            ), ["case_id", "face_id"])
            if inserted is not None:
                new_ids.append(inserted)
        return list(session.scalars(select(Match).where(Match.id.in_(new_ids)))) if new_ids else []


def rescored(best: dict[tuple[str, int], Candidate], heads: dict[str, tuple[int, CaseHead]],
             thresholds: dict[str, float], vectors: dict[int, np.ndarray]
             ) -> tuple[dict[tuple[str, int], tuple[float, int]], dict[tuple[str, int], dict[str, Any]]]:
    """The head's score of each candidate of a case with a head, and the evidence with it; drops (in
    ``best``) the candidates under the case threshold that the head does not accept."""
    scores, evidence = {}, {}
    for key, (case_id, face_id, _sha, similarity) in list(best.items()):
        if case_id not in heads:
            if similarity < thresholds[case_id]:
                del best[key]
            continue
        version, head = heads[case_id]
        score = float(head.score(vectors[face_id][None, :])[0])
        vouched = similarity < thresholds[case_id] and head.accepts(score, similarity)
        if similarity < thresholds[case_id] and not vouched:
            del best[key]
            continue
        scores[key] = (score, version)
        evidence[key] = case_model_evidence(similarity, score, version, head.threshold, vouched)
    return scores, evidence


def case_model_evidence(similarity: float, score: float, version: int, threshold: float,
                        vouched: bool) -> dict[str, Any]:
    """A face match's evidence with the case head's score; ``case_model`` fired when the head alone
    took it (the base similarity was under the case threshold)."""
    evidence = face_evidence(similarity)
    if vouched:
        evidence["fired"] = ["case_model"]
    evidence["scores"]["case_model"] = round(score, 4)
    evidence["details"] = {"case_model": {"version": version, "threshold": round(threshold, 4)}}
    return evidence


@dataclass(frozen=True)
class IndexedFace:
    face_id: int
    media_sha256: str
    vector: np.ndarray
    media_id: str
    source_url: str
    platform: str
    scraped_at: dt.datetime | None
    media_phash: str | None = None  # the media's pHash, 16 hex digits (mimamori.media.phash)


class Watchlist:
    """Lives in a pipeline worker (built in a DoFn's setup)."""

    def __init__(self, settings: Settings, model_version: str, *, sessions: sessionmaker | None = None,
                 enrolled: EnrolledFaces | None = None, producer: Any = None, objects: Any = None):
        """``sessions``, ``enrolled``, ``producer`` and ``objects`` replace the configured stores (tests: in memory)."""
        self.settings = settings
        self.model_version = model_version
        self.model = settings.models.embedder.name
        self.default_threshold = embedder_spec(self.model).match_threshold
        self.sessions = sessions if sessions is not None else open_database(settings.database_url())
        self.enrolled = enrolled if enrolled is not None else EnrolledFaces(settings)
        self.producer = producer if producer is not None else shared_producer(settings.kafka)
        self.topic = settings.kafka.topics.matches.name
        # The object store, made when first needed (the heads' weights, the references' keypoints).
        self.objects_factory = lambda: objects if objects is not None else object_client(settings)
        # Per-case heads (issue 20): they re-score a watched case's candidates (services/case_models.py).
        self.heads = HeadCache(self.sessions, self.objects_factory,
                               settings.minio.buckets.references.name) if settings.case_models.enabled else None

    def watched_cases(self) -> dict[str, float]:
        """Case id -> threshold, for cases whose consent in force covers the watchlist."""
        now = utcnow()
        with self.sessions() as session:
            thresholds = {case.id: case_threshold(case, self.model, self.default_threshold)
                          for case in session.scalars(select(Case))}
            watched = {}
            for consent in session.scalars(select(Consent)):
                if consent_in_force(consent, now, "watchlist") and consent.case_id in thresholds:
                    watched[consent.case_id] = thresholds[consent.case_id]
        return watched

    def _faces_written_by(self, case_ids: list[str]) -> dt.datetime | None:
        """When the newest face vector of these cases was written; None (Strong) where none has a time.
        Read after the faces being checked were indexed (see docs/matching.md for the window this leaves)."""
        with self.sessions() as session:
            return session.scalar(select(func.max(Case.faces_written_at)).where(Case.id.in_(case_ids)))

    def check(self, faces: list[IndexedFace], watched: dict[str, float] | None = None) -> list[Match]:
        """Match the faces against the enrolled faces of the watched cases (``watched_cases()`` unless given:
        the pipeline's writer reads them once for a batch's face and hash checks)."""
        if not faces:
            return []
        began = time.perf_counter()
        watched = self.watched_cases() if watched is None else watched
        if not watched:
            return []
        hits = self.enrolled.nearest(np.stack([f.vector for f in faces]), self.settings.watchlist.top_k,
                                     sorted(watched), self._faces_written_by(sorted(watched)))
        heads = self.heads.heads_for(sorted(watched)) if self.heads is not None else {}
        best: dict[tuple[str, int], Candidate] = {}
        for face, face_hits in zip(faces, hits, strict=True):
            for hit in face_hits:
                key = (hit.case_id, face.face_id)
                # A case's head may vouch for a face a little under the case threshold (down to its floor).
                bar = min(watched[hit.case_id], heads[hit.case_id][1].floor) if hit.case_id in heads \
                    else watched[hit.case_id]
                if hit.similarity >= bar and (key not in best or hit.similarity > best[key][3]):
                    best[key] = (hit.case_id, face.face_id, face.media_sha256, hit.similarity)
        by_face = {face.face_id: face for face in faces}
        case_scores, evidence = rescored(best, heads, watched, {f.face_id: f.vector for f in faces})
        new = record_matches(self.sessions, best.values(), self.model_version, "stream",
                             {f.media_sha256: f.scraped_at for f in faces if f.scraped_at},
                             {f.media_sha256: f.media_phash for f in faces if f.media_phash},
                             signals=evidence, case_scores=case_scores)
        self._announce_matches(new, lambda match: by_face[match.face_id])
        metrics.STAGE_SECONDS.labels(stage="watchlist").observe(time.perf_counter() - began)
        return new

    def link_sightings(self, sightings: list[tuple[str, str, str, str, dt.datetime]]) -> int:
        """Re-uploads (canonical sha256, media id, URL, platform, scraped at) of media already matched.

        Idempotent: the match keeps the latest scrape time; the sightings themselves are rows
        in Milvus keyed by media, listed with the match. Each is announced on the topic.
        """
        if not sightings:
            return 0
        watched = self.watched_cases()  # a lapsed or narrowed consent stops the announcements too
        if not watched:
            return 0
        by_sha: dict[str, list[tuple[str, str, str, dt.datetime]]] = {}
        for sha, media_id, url, platform, scraped_at in sightings:
            by_sha.setdefault(sha, []).append((media_id, url, platform, scraped_at))
        linked = []
        with self.sessions.begin() as session:
            for match in session.scalars(select(Match).where(Match.media_sha256.in_(sorted(by_sha)),
                                                             Match.case_id.in_(sorted(watched)))):
                latest = max(seen[3] for seen in by_sha[match.media_sha256])
                if match.last_seen_at is None or latest > match.last_seen_at:
                    match.last_seen_at = latest
                linked.append((match, by_sha[match.media_sha256]))
        for match, seen in linked:
            for media_id, url, platform, _scraped_at in seen:
                self._announce("sighting", match, media_id, url, platform)
        if linked:
            self.producer.flush(timeout=30)
        return len(linked)

    def _announce_matches(self, new: list[Match], seen: Callable[[Match], Any]) -> None:
        """Announce and count new matches; ``seen(match)`` has the ``media_id``, ``source_url`` and
        ``platform`` of where its media was seen."""
        for match in new:
            where = seen(match)
            self._announce("match", match, where.media_id, where.source_url, where.platform)
            metrics.WATCHLIST_MATCHES.labels(platform=where.platform).inc()
        if new:
            self.producer.flush(timeout=30)

    def _announce(self, kind: str, match: Match, media_id: str, source_url: str, platform: str) -> None:
        document = {
            "kind": kind, "match_id": match.id, "case_id": match.case_id, "face_id": match.face_id,
            "media_sha256": match.media_sha256, "similarity": round(match.similarity, 4), "status": match.status,
            "source": match.source, "media_id": media_id, "source_url": source_url, "platform": platform,
            "at": utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        self.producer.send(self.topic, key=match.case_id.encode(), value=match_json(document))
