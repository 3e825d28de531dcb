"""Charts the pages draw as SVG on the server (no script, classes only, so the CSP holds).

The operations page's numbers: the Grafana dashboards' queries over the last day, from
Prometheus's HTTP API (``/api/v1/query_range``), drawn as small line charts. The queries are the
dashboards' own (docker/grafana/dashboards), summed to one line each, so the page and Grafana
never disagree. When Prometheus cannot be reached the page says so.

The takedown report's numbers: horizontal bars (one per host, platform or country) and grouped
columns (one group per month), from the report's own rows.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import math
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from mimamori.core.config import Settings
from mimamori.web.i18n import N_

WINDOW = dt.timedelta(hours=24)
STEP_S = 600  # 144 points a day
TIMEOUT_S = 3.0
# The charts' own words, through the catalogs like every string of a page.
LABEL_MAX, LABEL_START, LABEL_END = N_("max %(value)s"), N_("-24 h"), N_("now")


@dataclass(frozen=True)
class Panel:
    key: str
    title: str  # marked for the catalogs, translated in the template
    unit: str
    query: str  # the dashboard panel's PromQL, as one series


PANELS = (
    Panel("ingest", N_("Media in (per second)"), "/s",
          'sum(rate(mimamori_kafka_topic_end_offset{topic=~"(.*[.])?media[.]scraped"}[5m]))'),
    Panel("lag", N_("Consumer lag (messages)"), "",
          'sum(mimamori_kafka_group_lag_messages{role="live"})'),
    Panel("faces", N_("Faces indexed (per second)"), "/s", "sum(rate(mimamori_faces_indexed_total[5m]))"),
    Panel("dead_letters", N_("Dead letters (per hour)"), "", "sum(increase(mimamori_dead_letters_total[1h]))"),
    Panel("pending", N_("Matches waiting for review"), "", "max(mimamori_watchlist_pending_matches)"),
)


@dataclass(frozen=True)
class Chart:
    panel: Panel
    points: list[tuple[float, float]]  # (unix time, value)
    svg: Markup
    latest: float | None


class PrometheusUnreachable(Exception):
    pass


Fetch = Callable[[str], dict[str, Any]]


def prometheus_url(settings: Settings) -> str:
    return (settings.web.prometheus_url or f"http://{settings.stack.monitoring.prometheus_address}").rstrip("/")


def fetch_json(url: str) -> dict[str, Any]:
    """GET a Prometheus API URL; any failure to reach it or to read its answer is PrometheusUnreachable."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:
            return json.loads(answer.read(4 * 1024 * 1024))
    except (OSError, ValueError, urllib.error.URLError, http.client.HTTPException) as error:
        raise PrometheusUnreachable(str(error)) from None


def query_range(base: str, query: str, end: dt.datetime, fetch: Fetch) -> list[tuple[float, float]]:
    params = urllib.parse.urlencode({"query": query, "start": f"{(end - WINDOW).timestamp():.0f}",
                                     "end": f"{end.timestamp():.0f}", "step": str(STEP_S)})
    answer = fetch(f"{base}/api/v1/query_range?{params}")
    if answer.get("status") != "success":
        raise PrometheusUnreachable(str(answer.get("error", "query refused")))
    points: list[tuple[float, float]] = []
    for series in answer.get("data", {}).get("result", [])[:1]:
        for when, value in series.get("values", []):
            number = float(value)
            if math.isfinite(number):
                points.append((float(when), number))
    return points


def _text_width(text: str) -> int:
    """About how wide ``text`` is in a chart label, in pixels: a Japanese character takes a full em."""
    return sum(10 if unicodedata.east_asian_width(c) in "WF" else 7 for c in text)


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _segments(points: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """The points in runs without a gap (no sample for more than a step and a half: a line would lie)."""
    runs: list[list[tuple[float, float]]] = []
    for point in points:
        if runs and point[0] - runs[-1][-1][0] <= STEP_S * 1.5:
            runs[-1].append(point)
        else:
            runs.append([point])
    return runs


def _svg_open(width: int, height: int, label: str = "") -> str:
    """The opening tag of every chart: its size, and what it shows for a screen reader."""
    title = f' aria-label="{escape(label)}"' if label else ""
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img"'
            f'{title} xmlns="http://www.w3.org/2000/svg">')


def line_chart(points: list[tuple[float, float]], end: dt.datetime, width: int = 360, height: int = 96,
               gettext: Callable[[str], str] = str) -> Markup:
    """An SVG line over the day (time left to right), its maximum labelled; classes only (no style).

    ``gettext`` translates the labels (the reader's catalog; English as written without one)."""
    pad_left, pad_top, pad_bottom = 4, 14, 16
    inner_w, inner_h = width - 2 * pad_left, height - pad_top - pad_bottom
    start = (end - WINDOW).timestamp()
    highest = max((v for _t, v in points), default=0.0)
    top = highest or 1.0
    base_y = pad_top + inner_h
    parts = [_svg_open(width, height),
             f'<line class="chart-axis" x1="{pad_left}" y1="{base_y}" x2="{width - pad_left}" y2="{base_y}"/>',
             f'<text class="chart-label" x="{pad_left}" y="10">'
             f'{escape(gettext(LABEL_MAX) % {"value": _number(highest)})}</text>',
             f'<text class="chart-label" x="{pad_left}" y="{height - 3}">{escape(gettext(LABEL_START))}</text>',
             f'<text class="chart-label chart-label-end" x="{width - pad_left}" y="{height - 3}">'
             f'{escape(gettext(LABEL_END))}</text>']
    for run in _segments(points):
        coords = " ".join(f"{pad_left + (t - start) / WINDOW.total_seconds() * inner_w:.1f},"
                          f"{pad_top + inner_h - (v / top) * inner_h:.1f}" for t, v in run)
        if len(run) == 1:
            x, y = coords.split(",")
            parts.append(f'<circle class="chart-dot" cx="{x}" cy="{y}" r="1.5"/>')
        else:
            parts.append(f'<polyline class="chart-line" points="{coords}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def operations_charts(settings: Settings, fetch: Fetch = fetch_json, now: dt.datetime | None = None,
                      gettext: Callable[[str], str] = str) -> list[Chart] | None:
    """One chart per panel; None when Prometheus cannot be reached (the first failure stops)."""
    end = now or dt.datetime.now(dt.UTC)
    base = prometheus_url(settings)
    charts = []
    try:
        for panel in PANELS:
            points = query_range(base, panel.query, end, fetch)
            svg = line_chart(points, end, gettext=gettext)
            charts.append(Chart(panel, points, svg, points[-1][1] if points else None))
    except PrometheusUnreachable:
        return None
    return charts


@dataclass(frozen=True)
class Bar:
    """One row of a bar chart: its label (a host, a platform, a country), its value and how it is said."""

    label: str
    value: float
    text: str


def bar_chart(bars: list[Bar], *, top: float | None = None, width: int = 480, row_height: int = 20,
              label_width: int = 170, label: str = "") -> Markup:
    """Horizontal bars, one row each, the label on the left and the value said at the bar's end.

    ``top`` is the value of a full bar (1.0 for a rate); by default the largest value."""
    highest = top if top else max((b.value for b in bars), default=0.0) or 1.0
    text_width = 64
    inner = width - label_width - text_width
    height = max(1, len(bars)) * row_height + 4
    parts = [_svg_open(width, height, label)]
    for row, bar in enumerate(bars):
        y = 2 + row * row_height
        length = max(0.0, min(1.0, bar.value / highest)) * inner
        name = bar.label if len(bar.label) <= 26 else bar.label[:25] + "…"
        parts += [f'<text class="chart-label chart-label-row" x="{label_width - 6}" y="{y + row_height - 7}">'
                  f'{escape(name)}</text>',
                  f'<rect class="chart-bar" x="{label_width}" y="{y + 2}" width="{length:.1f}" '
                  f'height="{row_height - 6}" data-label="{escape(bar.label)}" data-value="{bar.value:g}"/>',
                  f'<text class="chart-label" x="{label_width + length + 4:.1f}" y="{y + row_height - 7}">'
                  f'{escape(bar.text)}</text>']
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class Series:
    """One kind of column of a grouped column chart (URLs requested, removed...), its name in the legend."""

    name: str
    values: list[float | None]  # None: not known (no column drawn, which 0 would misstate)


def column_chart(groups: list[str], series: list[Series], *, width: int = 480, height: int = 170,
                 gettext: Callable[[str], str] = str, label: str = "") -> Markup:
    """Grouped columns (one group per month, one column per series), the maximum said, a legend below.

    Series are told apart by class (``chart-series-0``, ``-1``...), coloured by the style sheet."""
    pad, pad_top, legend_h, axis_h = 4, 14, 16, 14
    inner_w, inner_h = width - 2 * pad, height - pad_top - axis_h - legend_h
    highest = max((v for s in series for v in s.values if v is not None), default=0.0)
    top = highest or 1.0
    base_y = pad_top + inner_h
    parts = [_svg_open(width, height, label),
             f'<line class="chart-axis" x1="{pad}" y1="{base_y}" x2="{width - pad}" y2="{base_y}"/>',
             f'<text class="chart-label" x="{pad}" y="10">'
             f'{escape(gettext(LABEL_MAX) % {"value": _number(highest)})}</text>']
    slot = inner_w / max(1, len(groups))
    column = slot * 0.8 / max(1, len(series))
    for g, group in enumerate(groups):
        x0 = pad + g * slot + slot * 0.1
        for k, one in enumerate(series):
            value = one.values[g] if g < len(one.values) else None
            if value is None:
                continue
            tall = value / top * inner_h
            parts.append(f'<rect class="chart-bar chart-series-{k}" x="{x0 + k * column:.1f}" '
                         f'y="{base_y - tall:.1f}" width="{max(1.0, column - 1):.1f}" height="{tall:.1f}" '
                         f'data-label="{escape(group)}" data-series="{escape(one.name)}" data-value="{value:g}"/>')
        parts.append(f'<text class="chart-label chart-label-mid" x="{x0 + slot * 0.4:.1f}" y="{base_y + 11}">'
                     f'{escape(group)}</text>')
    x = pad
    for k, one in enumerate(series):
        parts += [f'<rect class="chart-bar chart-series-{k} chart-key" x="{x}" y="{height - 11}" width="9" '
                  f'height="9"/>',
                  f'<text class="chart-label" x="{x + 12}" y="{height - 3}">{escape(one.name)}</text>']
        x += 18 + _text_width(one.name)
    parts.append("</svg>")
    return Markup("".join(parts))
