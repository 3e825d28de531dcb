"""Takedowns: the list (filtered by case, state and host; what is due today and what is overdue),
one takedown's page (its URL, host, state history, re-checks, notices, and the transitions it
allows as forms), a takedown made by hand, and an escalation step taken.

Everything goes through services/takedowns.py, the CLI's front door too: access by case (a
reviewer sees only their cases' takedowns), every change audited there. No image is shown on
these pages: a media is named by its hashes, a page URL is text, never a link.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from mimamori.api.errors import http_status
from mimamori.core.errors import MimamoriError
from mimamori.services import hosts, takedowns, workbench
from mimamori.services.audit import Actor
from mimamori.services.workspace import Workspace
from mimamori.stores.takedowns import OPEN_STATES, STATES, TRANSITIONS
from mimamori.web.render import error_text, render, said_on_page
from mimamori.web.routing import PageRoute
from mimamori.web.security import Staff, page, workspace

# Browsers' pages only (mimamori/web/routing.py): the API's JSON routes of takedowns may share these paths.
shared = APIRouter(route_class=PageRoute)
Working = Annotated[Staff, Depends(page("admin", "reviewer"))]
TakedownId = Annotated[int, Path(ge=1, le=2**31 - 1)]
TakedownIds = Annotated[list[Annotated[int, Field(ge=1, le=2**31 - 1)]], Form(max_length=500)]
Filter = Annotated[str, Query(max_length=300)]
Note = Annotated[str, Form(max_length=2000)]
Url = Annotated[str, Form(max_length=2048)]
PAGE = 100
DONE = {"transition", "created", "escalated"}  # ?done= notices the pages say (never text from the URL)


CASE_SCAN = 500  # a confirmation's takedowns are its case's newest


def takedowns_of_matches(work: Workspace, actor: Actor, case_id: str, match_ids: list[int]) -> list:
    """The takedowns of these matches of one case (the "takedown #N" links of the queue and the match page)."""
    wanted = set(match_ids)
    return [t for t in takedowns.list_takedowns(work, actor, case_id=case_id, limit=CASE_SCAN)
            if t.match_id in wanted] if wanted else []


def _host_choices(work: Workspace, actor: Actor) -> list[tuple[str, str]]:
    """(key, label) of every host a filter may name: the directory's, then the unknown ones."""
    known = [(h.key, f"{h.operator} ({h.key})") for h in hosts.list_hosts(work, actor)]
    unknown = [(u.key, u.registrable_domain) for u in hosts.unknown_hosts(work, actor)]
    return known + unknown


def _list_page(request: Request, staff: Staff, *, case: str = "", state: str = "", host: str = "",
               needs_action: bool = False, page_number: int = 1, status: int = 200, **context) -> Response:
    work = workspace(request)
    state = state if state in STATES else ""
    rows = takedowns.list_takedowns(work, staff.actor, case_id=case or None, state=state or None,
                                    host_key=host or None, needs_action=needs_action, limit=PAGE + 1,
                                    offset=(page_number - 1) * PAGE)
    due = takedowns.due(work, staff.actor)
    kept = [(k, v) for k, v in (("case", case), ("state", state), ("host", host)) if v]
    if needs_action:
        kept.append(("needs_action", "true"))
    return render(request, "takedowns.html", {
        "takedowns": rows[:PAGE], "more": len(rows) > PAGE, "page": page_number, "due_groups": _due_groups(due),
        "overdue": sum(1 for d in due if d.overdue), "due_today": sum(1 for d in due if not d.overdue),
        "filters": {"case": case, "state": state, "host": host, "needs_action": needs_action},
        "query": urlencode(kept), "states": STATES, "cases": workbench.list_cases(work, staff.actor),
        "hosts": _host_choices(work, staff.actor), **context}, status=status)


@shared.get("/takedowns")
def takedown_list(request: Request, staff: Working, case: Filter = "", state: Filter = "", host: Filter = "",
                  needs_action: bool = False, done: str | None = None,
                  page_number: Annotated[int, Query(alias="page", ge=1, le=10_000)] = 1) -> Response:
    return _list_page(request, staff, case=case, state=state, host=host, needs_action=needs_action,
                      page_number=page_number, notice=done if done in DONE else None)


def _due_groups(due: list) -> list[dict]:
    """Due items by host and next step: one notice (or one step taken) covers a group."""
    groups: dict[tuple[str, int | None], dict] = {}
    for item in due:
        key = (item.takedown.host_key, item.next_step_index)
        group = groups.setdefault(key, {"host_key": key[0], "step": item.next_step_index,
                                        "next_step": item.next_step, "members": [], "overdue": False})
        group["members"].append(item)
        group["overdue"] = group["overdue"] or item.overdue
    return sorted(groups.values(), key=lambda g: (not g["overdue"], g["members"][0].due_at))


@shared.post("/takedowns")
async def create(request: Request, staff: Working, case_id: Annotated[str, Form(min_length=1, max_length=64)],
                 page_url: Url, media_url: Url = "", media_sha256: Annotated[str, Form(max_length=64)] = "",
                 platform: Annotated[str, Form(max_length=100)] = "", note: Note = "") -> Response:
    """A takedown made by hand, for a URL staff found elsewhere (the service refuses what is not a web URL)."""
    work = workspace(request)
    try:
        made = await run_in_threadpool(lambda: takedowns.create_takedown(
            work, staff.actor, case_id, page_url.strip(), media_url=media_url.strip() or None,
            media_sha256=media_sha256.strip().lower() or None, platform=platform.strip() or None,
            note=note.strip() or None))
    except MimamoriError as error:
        if not said_on_page(error):
            raise
        return _list_page(request, staff, status=http_status(error),
                          create_error=error_text(staff.view.language, error))
    return RedirectResponse(f"/takedowns/{made.id}?done=created", status_code=303)


def _detail(request: Request, staff: Staff, takedown_id: int, status: int = 200, **context) -> Response:
    work = workspace(request)
    detail = takedowns.get_takedown(work, staff.actor, takedown_id)  # access checked, audited
    entry = hosts.get_host(work, staff.actor, detail.takedown.host_key) if detail.takedown.host_known else None
    return render(request, "takedown.html", {
        "detail": detail, "t": detail.takedown, "host": entry,
        "allowed": TRANSITIONS.get(detail.takedown.state, ()), "open_states": OPEN_STATES, **context},
        status=status)


@shared.get("/takedowns/{takedown_id}")
def takedown_page(request: Request, staff: Working, takedown_id: TakedownId, done: str | None = None) -> Response:
    return _detail(request, staff, takedown_id, notice=done if done in DONE else None)


@shared.post("/takedowns/{takedown_id}/transition")
async def transition(request: Request, staff: Working, takedown_id: TakedownId,
                     to_state: Annotated[str, Form(max_length=20)], note: Note = "") -> Response:
    """A state change staff make (acknowledged, refused, removed on their statement...), with its note."""
    work = workspace(request)
    try:
        await run_in_threadpool(lambda: takedowns.transition(work, staff.actor, takedown_id, to_state,
                                                             note=note.strip() or None))
    except MimamoriError as error:
        if not said_on_page(error):
            raise
        return _detail(request, staff, takedown_id, http_status(error),
                       transition_error=error_text(staff.view.language, error))
    return RedirectResponse(f"/takedowns/{takedown_id}?done=transition", status_code=303)


@shared.post("/takedowns/escalate")
async def escalate(request: Request, staff: Working, takedown_ids: TakedownIds, note: Note = "") -> Response:
    """The next step of the hosts' ladders taken by staff themselves (a form filed elsewhere, a call)."""
    await run_in_threadpool(lambda: takedowns.escalate(workspace(request), staff.actor, takedown_ids,
                                                       note=note.strip() or None))
    return RedirectResponse("/takedowns?done=escalated", status_code=303)
