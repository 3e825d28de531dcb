"""The takedown report: per month, and per host, platform or country, the URLs requested and
removed, the removal rate, the median days to removal, the share still up after 7 and 30 days
and the reappearances; as tables, as SVG charts (mimamori/web/charts.py) and as CSV, so the
organisation can put it in its monthly report and show regulators which hosts ignore requests.

The numbers are services/takedowns.report's (the CLI's too); this module only draws them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from markupsafe import Markup

from mimamori.core.errors import InvalidInput
from mimamori.services import takedowns
from mimamori.web import charts
from mimamori.web.i18n import N_, translations
from mimamori.web.render import render
from mimamori.web.routing import PageRoute
from mimamori.web.security import Staff, page, workspace

# Browsers' pages only (mimamori/web/routing.py): the API's JSON routes of takedowns may share these paths.
shared = APIRouter(route_class=PageRoute)
Working = Annotated[Staff, Depends(page("admin", "reviewer"))]
By = Literal["host", "platform", "country"]
Month = Annotated[str, Query(max_length=7)]
MONTH = re.compile(r"(\d{4})-(\d{2})")
CHART_ROWS = 15  # the groups with the most requests; the table and the CSV have them all
SERIES = (N_("requested"), N_("removed"), N_("reappeared"))
STILL_UP = (N_("still up after 7 days"), N_("still up after 30 days"))


def month_range(month: str) -> tuple[dt.date | None, dt.date | None]:
    """The first day of ``YYYY-MM`` and the first of the next (excluded); (None, None) for every month."""
    if not month:
        return None, None
    found = MONTH.fullmatch(month)
    if found is None or not 1 <= int(found[2]) <= 12 or not 2000 <= int(found[1]) <= 2999:
        raise InvalidInput("bad_month", f"{month[:20]!r} is not a month (2026-11)")
    first = dt.date(int(found[1]), int(found[2]), 1)
    return first, dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


def days(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def report_charts(months: list[takedowns.ReportRow], groups: list[takedowns.ReportRow],
                  gettext: Callable[[str], str]) -> dict[str, Markup]:
    """The report's charts: requests by month, and by group the removal rate, median days and still up."""
    ordered = sorted(months, key=lambda r: r.month)
    top = sorted(groups, key=lambda r: (-r.requested, r.group))[:CHART_ROWS]
    drawn = {"months": charts.column_chart(
        [r.month for r in ordered],
        [charts.Series(gettext(SERIES[0]), [r.requested for r in ordered]),
         charts.Series(gettext(SERIES[1]), [r.removed for r in ordered]),
         charts.Series(gettext(SERIES[2]), [r.reappeared for r in ordered])],
        gettext=gettext, label=gettext(N_("URLs requested, removed and reappeared per month")))}
    rated = [r for r in top if r.removal_rate is not None]
    drawn["removal_rate"] = charts.bar_chart([charts.Bar(r.group, r.removal_rate, percent(r.removal_rate))
                                              for r in rated], top=1.0, label=gettext(N_("Removal rate")))
    timed = [r for r in top if r.median_days_to_removal is not None]
    drawn["median_days"] = charts.bar_chart(
        [charts.Bar(r.group, r.median_days_to_removal, days(r.median_days_to_removal)) for r in timed],
        label=gettext(N_("Median days to removal")))
    told = [r for r in top if r.still_up_7d is not None]  # requests old enough to tell (30 d: 7 d too)
    drawn["still_up"] = charts.column_chart(
        [r.group for r in told],
        [charts.Series(gettext(STILL_UP[0]), [r.still_up_7d * 100 for r in told]),
         charts.Series(gettext(STILL_UP[1]), [None if r.still_up_30d is None else r.still_up_30d * 100
                                              for r in told])],
        gettext=gettext, label=gettext(N_("Share still up after 7 and 30 days, in per cent")))
    return drawn


@shared.get("/takedowns/report")
def report_page(request: Request, staff: Working, by: By = "host", month: Month = "") -> Response:
    """The chosen month's groups (every month's by default), and the months' chart over all of them."""
    work = workspace(request)
    since, until = month_range(month)
    months = takedowns.report(work, staff.actor, by="month")
    rows = takedowns.report(work, staff.actor, by=by, since=since, until=until)
    drawn = report_charts(months, rows, translations(staff.view.language).gettext)
    return render(request, "takedown_report.html", {
        "rows": sorted(rows, key=lambda r: (r.month, -r.requested, r.group)), "months": months, "by": by,
        "month": month, "charts": drawn, "percent": percent, "days": days,
        "month_choices": sorted({r.month for r in months}, reverse=True)})


@shared.get("/takedowns/report.csv")
def report_csv(request: Request, staff: Working, by: Literal["month", "host", "platform", "country"] = "host",
               month: Month = "") -> Response:
    since, until = month_range(month)
    rows = takedowns.report(workspace(request), staff.actor, by=by, since=since, until=until)
    name = f"takedowns-{by}{'-' + month if month else ''}.csv"
    return Response(takedowns.report_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
