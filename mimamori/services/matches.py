"""Watchlist matches waiting for review, and the review decision.

A match is created by the pipeline's watchlist (or the retro search at enrolment) with
status ``pending_review``; a reviewer confirms or rejects it. Listing and deciding are
audited with the reviewer's name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select

from mimamori.core import metrics
from mimamori.core.errors import InvalidInput, NotFound
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import REVIEW_STATUSES, Match, utcnow


@dataclass(frozen=True)
class MatchView:
    id: int
    case_id: str
    face_id: int
    media_sha256: str
    similarity: float
    source: str
    status: str
    created_at: dt.datetime
    last_seen_at: dt.datetime | None
    reviewed_by: str | None
    reviewed_at: dt.datetime | None

    @classmethod
    def of(cls, match: Match) -> MatchView:
        return cls(match.id, match.case_id, match.face_id, match.media_sha256, match.similarity, match.source,
                   match.status, match.created_at, match.last_seen_at, match.reviewed_by, match.reviewed_at)


def list_matches(work: Workspace, actor: Actor, case_id: str | None = None, status: str | None = None,
                 limit: int = 100, offset: int = 0) -> list[MatchView]:
    """Newest first, optionally of one case and one status."""
    query = select(Match).order_by(Match.id.desc())
    if case_id is not None:
        query = query.where(Match.case_id == case_id)
    if status is not None:
        query = query.where(Match.status == status)
    with work.sessions() as session:
        rows = [MatchView.of(m) for m in session.scalars(query.limit(limit).offset(offset))]
    record(work.sessions, actor, "view_matches", case_id=case_id, result_count=len(rows))
    return rows


def review(work: Workspace, actor: Actor, match_id: int, status: str) -> MatchView:
    """Record a reviewer's decision on a match (or put it back to pending)."""
    with refusals_audited(work.sessions, actor, "review", target=f"match:{match_id}"), \
            work.sessions.begin() as session:
        if status not in REVIEW_STATUSES:
            raise InvalidInput("unknown_status", f"a review decides {', '.join(REVIEW_STATUSES)}, not {status!r}")
        match = session.get(Match, match_id)
        if match is None:
            raise NotFound("unknown_match", f"no match {match_id}")
        if match.status == "pending_review" and status != "pending_review":
            metrics.REVIEW_SECONDS.observe((utcnow() - match.created_at).total_seconds())
        match.status, match.reviewed_by, match.reviewed_at = status, actor.name, utcnow()
        view = MatchView.of(match)
    record(work.sessions, actor, "review", case_id=view.case_id, target=f"match:{match_id}", status=status)
    return view
