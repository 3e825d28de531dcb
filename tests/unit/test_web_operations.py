"""The operations page and the audit page of the workbench: the dashboards' queries drawn as
SVG from Prometheus's query_range (a fake Prometheus here), a plain sentence when it cannot be
reached; the audit log filtered and downloaded, each read audited."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import urllib.parse
from pathlib import Path

import pytest
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.services.audit import Actor, record
from mimamori.stores.cases import AuditEvent
from mimamori.web import charts
from tests.support.web import cheap_passwords, make_user, signed_in_client
from tests.support.workspace import MemoryWorkspace


@pytest.fixture
def work(tmp_path, monkeypatch) -> MemoryWorkspace:
    cheap_passwords(monkeypatch)
    work = MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {})
    make_user(work, "otto", "auditor")
    make_user(work, "anna", "reviewer")
    return work


def test_the_operations_page_draws_the_dashboards_queries(work):
    asked = []

    def prometheus(url: str) -> dict:
        asked.append(url)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        start, end = float(query["start"][0]), float(query["end"][0])
        assert end - start == 86400 and query["step"] == ["600"]
        values = [[start + i * 600, str(i % 7)] for i in range(145)]
        return {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}}

    client = signed_in_client(work, "anna")
    client.app.state.prometheus_fetch = prometheus
    page = client.get("/operations")
    assert page.status_code == 200 and page.text.count("<polyline") == len(charts.PANELS) == 5
    assert [urllib.parse.parse_qs(urllib.parse.urlsplit(u).query)["query"][0] for u in asked] == \
        [p.query for p in charts.PANELS]
    assert all(u.startswith("http://127.0.0.1:9090/api/v1/query_range?") for u in asked)
    assert 'id="chart-pending"' in page.text and "style=" not in page.text


def test_the_pages_queries_are_the_grafana_panels_summed_to_one_line():
    dashboards = Path(__file__).resolve().parents[2] / "docker" / "grafana" / "dashboards"
    exprs = {re.sub(r" by \([^)]*\) ?", "", t["expr"]) for f in dashboards.glob("*.json")
             for p in json.loads(f.read_text())["panels"] for t in p.get("targets", [])}
    assert {p.query for p in charts.PANELS} <= exprs


def test_an_unreachable_prometheus_is_said_plainly(work):
    def down(_url: str) -> dict:
        raise charts.PrometheusUnreachable("connection refused")

    client = signed_in_client(work, "anna")
    client.app.state.prometheus_fetch = down
    page = client.get("/operations")
    assert page.status_code == 200 and 'id="prometheus-unreachable"' in page.text and "<svg" not in page.text


def test_a_chart_of_no_points_is_an_empty_frame_and_a_gap_is_not_bridged():
    now = dt.datetime.now(dt.UTC)
    svg = charts.line_chart([], now)
    assert "<svg" in svg and "<polyline" not in svg and "max 0" in svg
    start = (now - charts.WINDOW).timestamp()
    run = [(start + i * 600, 1.0) for i in range(5)]
    later = [(start + 50 * 600 + i * 600, 2.0) for i in range(3)]
    gapped = charts.line_chart(run + later + [(start + 100 * 600, 3.0)], now)
    assert gapped.count("<polyline") == 2 and gapped.count("<circle") == 1 and "max 3" in gapped


def test_the_audit_page_filters_and_downloads_and_each_read_is_audited(work):
    reviewer = Actor("anna", "reviewer")
    record(work.sessions, reviewer, "reveal", case_id="c1", target="match:1")
    record(work.sessions, reviewer, "review", case_id="c1", target="match:1")
    record(work.sessions, Actor("ben", "reviewer"), "reveal", case_id="c2", target="match:2")
    client = signed_in_client(work, "otto")
    page = client.get("/audit", params={"who": "anna", "action": "reveal"})
    assert page.status_code == 200 and page.text.count('data-action="reveal"') == 1
    since = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert 'data-action="reveal"' not in client.get("/audit", params={"since": since}).text
    download = client.get("/audit.csv", params={"case_id": "c1"})
    assert download.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert {r["action"] for r in rows} == {"reveal", "review"} and {r["case_id"] for r in rows} == {"c1"}
    with work.sessions() as session:
        reads = [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.actor == "otto"))]
    assert reads.count("read_audit") == 2 and reads.count("export_audit") == 1
    assert signed_in_client(work, "anna").get("/audit").status_code == 403
