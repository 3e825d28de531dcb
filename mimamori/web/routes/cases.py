"""Cases: the list, a case's page (consent record, enrolled photos, matches and decisions), and
the admin's forms on it: open a case, record consent, enrol photos, withdraw.

Uploads pass the API's checks (type and size before a byte is decoded, mimamori/api/uploads.py)
and then the pipeline's decoder guards inside enrolment (pixel bombs, corrupt files); a refusal
is said on the page, in the reader's language.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from mimamori.api.errors import http_status
from mimamori.api.uploads import read_upload
from mimamori.core.errors import InvalidInput, MimamoriError
from mimamori.services import cases, consent, enrolment, matches, queue, workbench
from mimamori.services.audit import refusals_audited
from mimamori.web.render import error_text, render
from mimamori.web.routing import PageRoute
from mimamori.web.security import Staff, page, workspace

router = APIRouter()
shared = APIRouter(route_class=PageRoute)  # paths the JSON API answers too (mimamori/web/routing.py)
Reviewing = Annotated[Staff, Depends(page("admin", "reviewer"))]
Admin = Annotated[Staff, Depends(page("admin"))]
Text = Annotated[str, Form(max_length=200)]
SCOPES = ("search", "watchlist", "takedown")
CASE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # the case ids a page names in a URL (POST /cases's pattern)
ENROLLED = re.compile(r"enrolled-(\d{1,6})-(\d{1,9})")  # ?done= after an enrolment: photos, earlier matches


@router.get("/cases")
def case_list(request: Request, staff: Reviewing, withdrawn: str | None = None) -> Response:
    work = workspace(request)
    rows = workbench.list_cases(work, staff.actor)
    # Said only of a case id that is gone: never text from the URL that merely looks like a notice.
    shown = withdrawn if withdrawn and CASE_ID.fullmatch(withdrawn) \
        and not workbench.case_exists(work, withdrawn) else None
    return render(request, "cases.html", {"cases": rows, "withdrawn": shown})


@shared.post("/cases")
async def create_case(request: Request, staff: Admin, case_id: Annotated[str, Form(min_length=1, max_length=64,
                                                                                  pattern=r"^[A-Za-z0-9._-]+$")],
                      display_name: Annotated[str, Form(min_length=1, max_length=200)],
                      match_threshold: Annotated[str, Form(max_length=20)] = "") -> Response:
    work = workspace(request)
    try:
        with refusals_audited(work.sessions, staff.actor, "create_case", case_id=case_id):
            try:
                threshold = float(match_threshold) if match_threshold.strip() else None
            except ValueError:
                raise InvalidInput("bad_threshold", "the threshold is a number from 0 to 1") from None
            if threshold is not None and not 0 < threshold < 1:
                raise InvalidInput("bad_threshold", "the threshold is a number from 0 to 1")
        await run_in_threadpool(cases.create_case, work, staff.actor, case_id, display_name, threshold)
    except MimamoriError as error:
        rows = workbench.list_cases(work, staff.actor)
        return render(request, "cases.html", {"cases": rows, "withdrawn": None,
                                              "error": error_text(staff.view.language, error)},
                      status=http_status(error))
    return RedirectResponse(f"/cases/{case_id}", status_code=303)


def _case_page(request: Request, staff: Staff, case_id: str, status: int = 200, **context) -> Response:
    work = workspace(request)
    record = workbench.case_record(work, staff.actor, case_id)
    found = matches.list_matches(work, staff.actor, case_id=case_id, limit=500)
    return render(request, "case.html", {"record": record, "matches": found, "scopes": SCOPES,
                                         "now": dt.datetime.now(dt.UTC), **context}, status=status)


@shared.get("/cases/{case_id}")
def case_page(request: Request, staff: Reviewing, case_id: str, done: str | None = None) -> Response:
    enrolled = ENROLLED.fullmatch(done or "")
    if enrolled:
        return _case_page(request, staff, case_id, notice="enrolled",
                          enrolled={"photos": int(enrolled[1]), "matches": int(enrolled[2])})
    return _case_page(request, staff, case_id, notice="consent" if done == "consent" else None)


def _local_time(value: str, offset_minutes: int, field: str) -> dt.datetime | None:
    """A ``datetime-local`` value in the browser's zone (its offset from UTC, as JavaScript gives it)."""
    if not value.strip():
        return None
    try:
        naive = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput("bad_time", f"{field}: not a date and time") from None
    if naive.tzinfo is not None:
        return naive
    return naive.replace(tzinfo=dt.timezone(-dt.timedelta(minutes=offset_minutes)))


@shared.post("/cases/{case_id}/consent")
async def record_consent(request: Request, staff: Admin, case_id: str, given_by: Text, given_at: Text,
                         relationship_to_client: Text = "self", expires_at: Text = "",
                         scope: Annotated[list[str] | None, Form()] = None,
                         document_sha256: Annotated[str, Form(max_length=64)] = "",
                         tz_offset: Annotated[int, Form(ge=-24 * 60, le=24 * 60)] = 0) -> Response:
    work = workspace(request)
    try:
        with refusals_audited(work.sessions, staff.actor, "record_consent", case_id=case_id):
            try:
                body = consent.ConsentRecord(
                    given_by=given_by, relationship_to_client=relationship_to_client or "self",
                    given_at=_local_time(given_at, tz_offset, "given at"),
                    expires_at=_local_time(expires_at, tz_offset, "expires at"), scope=scope or [],
                    recorded_by=staff.username, document_sha256=document_sha256.strip().lower() or None)
            except ValidationError as error:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
                refusal = InvalidInput("invalid_consent", problems)  # the audit row keeps pydantic's words
                refusal.fields = list(dict.fromkeys(str(e["loc"][0]) for e in error.errors() if e["loc"]))
                raise refusal from None
        await run_in_threadpool(consent.record_consent, work, staff.actor, case_id, body)
    except MimamoriError as error:
        return _case_page(request, staff, case_id, http_status(error),
                          consent_error=error_text(staff.view.language, error))
    return RedirectResponse(f"/cases/{case_id}?done=consent", status_code=303)


@shared.post("/cases/{case_id}/photos")
async def enrol(request: Request, staff: Admin, case_id: str,
                photos: Annotated[list[UploadFile], File()]) -> Response:
    work = workspace(request)
    try:
        with refusals_audited(work.sessions, staff.actor, "enroll", case_id=case_id):
            files = [await read_upload(upload, work.settings.api.max_upload_bytes) for upload in photos
                     if upload.filename or upload.size]
        result = await run_in_threadpool(enrolment.enroll, work, staff.actor, case_id, files)
    except MimamoriError as error:
        return _case_page(request, staff, case_id, http_status(error),
                          enrol_error=error_text(staff.view.language, error))
    return RedirectResponse(f"/cases/{case_id}?done=enrolled-{len(result.photos)}-{result.retro_matches}",
                            status_code=303)


@router.post("/cases/{case_id}/withdraw")
async def withdraw(request: Request, staff: Admin, case_id: str,
                   confirm: Annotated[str, Form(max_length=200)] = "") -> Response:
    work = workspace(request)
    try:
        with refusals_audited(work.sessions, staff.actor, "withdraw", case_id=case_id):
            if confirm.strip() != case_id:
                raise InvalidInput("confirmation_differs", "type the case id to confirm the withdrawal")
        await run_in_threadpool(cases.withdraw, work, staff.actor, case_id)
    except MimamoriError as error:
        return _case_page(request, staff, case_id, http_status(error),
                          withdraw_error=error_text(staff.view.language, error))
    return RedirectResponse(f"/cases?withdrawn={case_id}", status_code=303)


@router.get("/cases/{case_id}/decisions.csv")
def decisions_csv(request: Request, staff: Reviewing, case_id: str) -> Response:
    rows = queue.decision_log(workspace(request), staff.actor, case_id=case_id)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", case_id)
    return Response(queue.decision_log_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="decisions-{name}.csv"'})
