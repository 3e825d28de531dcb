"""The operations page: the pipeline's health over the last day, for staff who never open Grafana."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from mimamori.web import charts
from mimamori.web.i18n import translations
from mimamori.web.render import render
from mimamori.web.security import Staff, page, workspace

router = APIRouter()
Signed = Annotated[Staff, Depends(page())]


@router.get("/operations")
def operations(request: Request, staff: Signed) -> Response:
    settings = workspace(request).settings
    fetch = getattr(request.app.state, "prometheus_fetch", charts.fetch_json)  # tests give their own
    found = charts.operations_charts(settings, fetch, gettext=translations(staff.view.language).gettext)
    return render(request, "operations.html", {"charts": found, "prometheus": charts.prometheus_url(settings)})
