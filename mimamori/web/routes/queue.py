"""The review queue, a match's page, and decisions (one match, or a whole cluster).

Opening the queue claims the batch it shows (services/queue.py: exclusive, for the
organisation's claim minutes); an item another reviewer won in the meantime is left out.
A decision is a plain form post that comes back to the page it was made on.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from mimamori.core.errors import Forbidden, MimamoriError
from mimamori.services import queue, users
from mimamori.services.matches import MatchView
from mimamori.stores.cases import DECISIONS
from mimamori.web.render import error_text, render
from mimamori.web.routes import takedowns as takedown_pages
from mimamori.web.security import Staff, page, safe_next, workspace

router = APIRouter()
Reviewing = Annotated[Staff, Depends(page("admin", "reviewer"))]
MatchId = Annotated[int, Path(ge=1, le=2**31 - 1)]
MatchIds = Annotated[list[Annotated[int, Field(ge=1, le=2**31 - 1)]], Form(max_length=500)]
Decision = Annotated[Literal[DECISIONS], Form()]  # type: ignore[valid-type]
Note = Annotated[str, Form(max_length=2000)]
Back = Annotated[str, Form(max_length=2000)]
BATCH = 20  # items claimed and shown at once
# Refusals of a decision said on the queue page (the item was taken or decided meanwhile).
KEPT_ON_PAGE = ("claimed_by_other", "already_decided", "note_too_long", "second_opinion_needed")
CONFIRMED = re.compile(r"\d{1,10}(,\d{1,10}){0,499}")


def _held(queues: list[queue.CaseQueue], held: queue.Held, holder: str) -> list[queue.CaseQueue]:
    """The queue with only the items this reviewer now holds, each with its claim as it now is
    (the items were listed before they were claimed)."""
    ids, kept = set(held.match_ids), []
    for case in queues:
        clusters = [replace(c, items=[replace(i, claimed_by=holder, claimed_until=held.until)
                                      for i in c.items if i.match_id in ids]) for c in case.clusters]
        kept.append(replace(case, clusters=[c for c in clusters if c.items]))
    return kept


def _confirmed_ids(value: str | None) -> list[int]:
    """The matches a decision just confirmed (``?confirmed=3,4``): digits only, else none."""
    if not value or not CONFIRMED.fullmatch(value):
        return []
    return sorted({int(i) for i in value.split(",")})


def _confirmed_takedowns(work, staff: Staff, case_id: str | None, match_ids: list[int]) -> list:
    """The takedowns the confirmation just made; none for a case not the reviewer's (a link from elsewhere)."""
    if not case_id or not match_ids:
        return []
    try:
        return takedown_pages.takedowns_of_matches(work, staff.actor, case_id, match_ids)
    except Forbidden:  # refused and audited by the service; the queue shows itself without it
        return []


@router.get("/queue")
def queue_page(request: Request, staff: Reviewing, case: str | None = None,
               lane: Literal["pending", "unsure"] = "pending", order: Literal["newest", "strongest"] = "newest",
               error: str | None = None, paused: bool = False,
               confirmed: Annotated[str | None, Query(max_length=6000)] = None,
               confirmed_case: Annotated[str | None, Query(max_length=64)] = None) -> Response:
    """``paused``: right after giving the batch back, the page claims nothing until opened again.
    ``confirmed`` (of ``confirmed_case``): the matches just confirmed, whose takedowns the page names."""
    work = workspace(request)
    made = _confirmed_takedowns(work, staff, confirmed_case, _confirmed_ids(confirmed))
    queues = queue.review_queue(work, staff.actor, case_id=case, order=order, lane=lane, limit=BATCH)
    shown = [item.match_id for q in queues for c in q.clusters for item in c.items]
    held = queue.hold(work, staff.actor, shown) if shown and not paused else queue.Held([], None)
    started = users.review_activity(work, staff.token) if held.match_ids else staff.signed.review_started_at
    kept = urlencode([(k, v) for k, v in request.query_params.multi_items()
                      if k not in ("error", "confirmed", "confirmed_case")])
    here = request.url.path + (f"?{kept}" if kept else "")
    return render(request, "queue.html", {
        "queues": _held(queues, held, staff.actor.name), "all_cases": queues, "case": case, "lane": lane,
        "order": order,
        "claim_minutes": staff.org.claim_minutes, "break_minutes": staff.org.break_minutes,
        "review_started": started, "back": safe_next(here),
        "error": error_text(staff.view.language, error) if error in KEPT_ON_PAGE else None, "paused": paused,
        "confirmed_takedowns": made})


@router.get("/matches/{match_id}")
def match_page(request: Request, staff: Reviewing, match_id: MatchId) -> Response:
    work = workspace(request)
    held = match_id in queue.claim(work, staff.actor, [match_id])  # only a match of the reviewer's cases
    evidence = queue.evidence(work, staff.actor, match_id)  # access checked, audited
    if held:
        users.review_activity(work, staff.token)
    made = takedown_pages.takedowns_of_matches(work, staff.actor, evidence.match.case_id, [match_id]) \
        if evidence.match.status == "confirmed" else []
    return render(request, "match.html", {"evidence": evidence, "held": held, "decisions": DECISIONS,
                                          "takedowns": made,
                                          "back": f"/matches/{match_id}",
                                          "break_minutes": staff.org.break_minutes,
                                          "review_started": staff.signed.review_started_at})


def _back(back: str, error: MimamoriError | None = None, confirmed: list[MatchView] | None = None) -> Response:
    """To the page the decision was made on; a refusal said there, or the confirmed matches (their takedowns)."""
    target = safe_next(back, "/queue")
    if error is not None:
        target += ("&" if "?" in target else "?") + f"error={error.reason}"
    elif confirmed:  # a decision is of one match, a cluster's of one case
        target += ("&" if "?" in target else "?") + urlencode(
            {"confirmed_case": confirmed[0].case_id, "confirmed": ",".join(str(m.id) for m in confirmed)})
    return RedirectResponse(target, status_code=303)


@router.post("/matches/{match_id}/decision")
async def decide(request: Request, staff: Reviewing, match_id: MatchId, decision: Decision, note: Note = "",
                 back: Back = "/queue") -> Response:
    try:
        view = await run_in_threadpool(queue.decide, workspace(request), staff.actor, match_id, decision,
                                       note or None)
    except MimamoriError as error:
        if error.reason not in KEPT_ON_PAGE:
            raise
        return _back("/queue" if back.startswith("/matches/") else back, error)
    return _back("/queue" if back == f"/matches/{match_id}" else back,
                 confirmed=[view] if decision == "confirmed" else None)


@router.post("/queue/decisions")
async def decide_cluster(request: Request, staff: Reviewing, match_ids: MatchIds,
                         decision: Decision, note: Note = "", back: Back = "/queue") -> Response:
    try:
        views = await run_in_threadpool(queue.decide_cluster, workspace(request), staff.actor, match_ids, decision,
                                        note or None)
    except MimamoriError as error:
        if error.reason not in KEPT_ON_PAGE:
            raise
        return _back(back, error)
    return _back(back, confirmed=views if decision == "confirmed" else None)


@router.post("/queue/release")
async def release(request: Request, staff: Reviewing, match_ids: MatchIds) -> Response:
    """Give back the batch shown (say, at the end of a shift), so others may take it at once."""
    await run_in_threadpool(queue.release, workspace(request), staff.actor, match_ids)
    return RedirectResponse("/queue?paused=true", status_code=303)


@router.post("/queue/break")
async def took_a_break(request: Request, staff: Reviewing, back: Back = "/queue") -> Response:
    """The reviewer took a break: continuous review starts again from now."""
    await run_in_threadpool(lambda: users.review_activity(workspace(request), staff.token, take_break=True))
    return _back(back)
