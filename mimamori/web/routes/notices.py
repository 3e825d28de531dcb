"""Notices: what needs one (open URLs by host), the text previewed for a host's URLs, and the
three ways it leaves: copied into the host's web form, downloaded as an ``.eml``, or sent over
SMTP when the organisation configured a server. Each of the three stores the notice as it left
(services/notices.py, in one transaction with the takedowns' transitions and the audit row);
the preview stores nothing. A notice lists URLs and hashes, never a client's name or an image.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from mimamori.api.errors import http_status
from mimamori.core.errors import MimamoriError
from mimamori.services import notices
from mimamori.web.render import error_text, render, said_on_page
from mimamori.web.routing import PageRoute
from mimamori.web.security import Staff, page, workspace

# Browsers' pages only (mimamori/web/routing.py): the API's JSON routes of takedowns may share these paths.
shared = APIRouter(route_class=PageRoute)
Working = Annotated[Staff, Depends(page("admin", "reviewer"))]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
QueryIds = Annotated[list[Id], Query(alias="takedown_id", max_length=500)]
FormIds = Annotated[list[Id], Form(alias="takedown_id", max_length=500)]
Language = Annotated[str, Query(max_length=8)]
FormLanguage = Annotated[str, Form(max_length=8)]
Step = Annotated[int | None, Query(ge=0, le=100)]  # the index of the ladder step (0: its first)
FormStep = Annotated[str, Form(max_length=4)]  # empty: the host itself (no escalation step)
NoticeId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _step(value: str | None) -> int | None:
    """The ladder step's index from a form (0 is the first step), or None: a first notice to the host."""
    return int(value) if value and value.isdigit() and int(value) <= 100 else None


def _language(value: str | None) -> str | None:
    return value if value in notices.LANGUAGES else None


@shared.get("/notices")
def notice_list(request: Request, staff: Working) -> Response:
    work = workspace(request)
    return render(request, "notices.html", {"batches": notices.notice_batches(work, staff.actor),
                                            "notices": notices.list_notices(work, staff.actor)})


def _preview(request: Request, staff: Staff, ids: list[int], language: str | None, step: int | None,
             status: int = 200, **context) -> Response:
    work = workspace(request)
    draft = notices.preview_notice(work, staff.actor, ids, language=language, step=step)
    return render(request, "notice_preview.html", {
        "draft": draft, "ids": ids, "step": step, "languages": notices.LANGUAGES,
        "smtp": bool(work.settings.takedowns.smtp.host), **context}, status=status)


@shared.get("/notices/preview")
def preview(request: Request, staff: Working, takedown_ids: QueryIds, language: Language = "",
            step: Step = None) -> Response:
    """The notice's text for these takedowns (of one host), in the host's language or the one asked for."""
    return _preview(request, staff, takedown_ids, _language(language), step)


@shared.post("/notices/eml")
async def download_eml(request: Request, staff: Working, takedown_ids: FormIds, language: FormLanguage = "",
                       step: FormStep = "") -> Response:
    """The notice as an .eml to send from the organisation's own mail program; stored as sent."""
    work = workspace(request)
    try:
        view, eml = await run_in_threadpool(lambda: notices.download_eml(
            work, staff.actor, takedown_ids, language=_language(language), step=_step(step)))
    except MimamoriError as error:
        return _refused(request, staff, error, takedown_ids, language, step)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", view.host_key)
    return Response(eml, media_type="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="notice-{view.id}-{name}.eml"'})


def _refused(request: Request, staff: Staff, error: MimamoriError, ids: list[int], language: str,
             step: str) -> Response:
    """A refusal said on the preview (consent, an unverified contact, no SMTP server...)."""
    if not said_on_page(error):
        raise error
    return _preview(request, staff, ids, _language(language), _step(step), status=http_status(error),
                    send_error=error_text(staff.view.language, error))


async def _recorded(request: Request, staff: Staff, record, ids: list[int], language: str, step: str,
                    done: str) -> Response:
    """The notice stored as sent by ``record`` (services/notices.py), then its page; a refusal on the preview."""
    work = workspace(request)
    try:
        view = await run_in_threadpool(lambda: record(work, staff.actor, ids, language=_language(language),
                                                      step=_step(step)))
    except MimamoriError as error:
        return _refused(request, staff, error, ids, language, step)
    return RedirectResponse(f"/notices/{view.id}?done={done}", status_code=303)


@shared.post("/notices/web-form")
async def web_form(request: Request, staff: Working, takedown_ids: FormIds, language: FormLanguage = "",
                   step: FormStep = "") -> Response:
    """Staff pasted the text into the host's web form: stored as sent through it."""
    return await _recorded(request, staff, notices.record_web_form, takedown_ids, language, step, "web_form")


@shared.post("/notices/send")
async def send(request: Request, staff: Working, takedown_ids: FormIds, language: FormLanguage = "",
               step: FormStep = "") -> Response:
    """Sent over the organisation's SMTP server (takedowns.smtp), stored as sent."""
    return await _recorded(request, staff, notices.send_notice, takedown_ids, language, step, "smtp")


@shared.get("/notices/{notice_id}")
def notice_page(request: Request, staff: Working, notice_id: NoticeId, done: str | None = None) -> Response:
    """A stored notice as it left (its text gone once its case was withdrawn)."""
    view = notices.get_notice(workspace(request), staff.actor, notice_id)
    return render(request, "notice.html", {"n": view, "notice": done if done in ("web_form", "smtp") else None})
