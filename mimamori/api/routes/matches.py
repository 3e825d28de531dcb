"""Watchlist matches and their review (reviewer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from mimamori.api.schemas import ReviewIn, ReviewStatus
from mimamori.api.security import Reviewer, Work
from mimamori.services import matches
from mimamori.services.matches import MatchView

router = APIRouter(tags=["reviewer"])


@router.get("/matches")
def list_matches(actor: Reviewer, work: Work, case_id: str | None = None, status: ReviewStatus | None = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100,
                 offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[MatchView]:
    return matches.list_matches(work, actor, case_id, status, limit, offset)


@router.post("/matches/{match_id}/review")
def review(match_id: Annotated[int, Path(ge=1, le=2**31 - 1)], body: ReviewIn, actor: Reviewer,
           work: Work) -> MatchView:
    return matches.review(work, actor, match_id, body.status, body.note)
