"""The audit log for auditors: filter by actor, case, action and time; download as CSV (audited)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from mimamori.core.errors import InvalidInput
from mimamori.services.audit import audit_csv, read_audit
from mimamori.web.render import render
from mimamori.web.routing import PageRoute
from mimamori.web.security import Staff, page, workspace

router = APIRouter()
shared = APIRouter(route_class=PageRoute)  # paths the JSON API answers too (mimamori/web/routing.py)
Auditor = Annotated[Staff, Depends(page("auditor"))]
PAGE = 100
EXPORT_MAX = 100_000
Filter = Annotated[str, Query(max_length=200)]


def _time(value: str, name: str) -> dt.datetime | None:
    """A date or a date and time from the form (UTC unless it says its zone)."""
    if not value.strip():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput("bad_time", f"{name}: not a date or time (2026-12-01 or 2026-12-01T09:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _filters(who: str, case_id: str, action: str, since: str, until: str) -> dict:
    return {"who": who.strip() or None, "case_id": case_id.strip() or None, "action": action.strip() or None,
            "since": _time(since, "from"), "until": _time(until, "until")}


@shared.get("/audit")
def audit_page(request: Request, staff: Auditor, who: Filter = "", case_id: Filter = "", action: Filter = "",
               since: Filter = "", until: Filter = "",
               page_number: Annotated[int, Query(alias="page", ge=1, le=10_000)] = 1) -> Response:
    filters = _filters(who, case_id, action, since, until)
    rows = read_audit(workspace(request).sessions, staff.actor, limit=PAGE + 1, offset=(page_number - 1) * PAGE,
                      **filters)
    form = {"who": who, "case_id": case_id, "action": action, "since": since, "until": until}
    return render(request, "audit.html", {
        "rows": rows[:PAGE], "more": len(rows) > PAGE, "page": page_number,
        "form": form, "query": urlencode({k: v for k, v in form.items() if v})})


@router.get("/audit.csv")
def audit_export(request: Request, staff: Auditor, who: Filter = "", case_id: Filter = "", action: Filter = "",
                 since: Filter = "", until: Filter = "") -> Response:
    rows = read_audit(workspace(request).sessions, staff.actor, limit=EXPORT_MAX, export=True,
                      **_filters(who, case_id, action, since, until))
    return Response(audit_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="audit.csv"'})
