"""Every dashboard panel's query returns data from the live Prometheus after a pipeline run."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from mimamori.api.app import create_app
from mimamori.services.access import assign
from mimamori.services.audit import Actor
from mimamori.services.auth import create_api_key
from mimamori.services.cases import create_case
from mimamori.services.consent import ConsentRecord
from mimamori.services.enrolment import enroll
from mimamori.services.workspace import Workspace
from tests.integration import samples as sample_sets
from tests.integration.helpers import isolated_settings, publish, run_pipeline
from tests.support import edits
from tests.unit.test_monitoring_files import load_dashboards

pytestmark = pytest.mark.integration


def query(settings, expr: str) -> list[dict]:
    url = (f"http://{settings.stack.monitoring.prometheus_address}/api/v1/query?"
           + urllib.parse.urlencode({"query": expr}))
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_every_dashboard_panel_returns_data_after_a_pipeline_run(stack, settings, testdata):
    with isolated_settings(settings) as s:
        # Activity for every dashboard: a client enrolled, a re-upload matched and reviewed, a bad file.
        work = Workspace(s)
        portrait = (testdata / "faces" / "paul_rudd.jpg").read_bytes()
        create_case(work, Actor("test", "admin"), "m1", "M.")
        consent = ConsentRecord(given_by="client", given_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
                                scope=["search", "watchlist"], recorded_by="staff")
        enroll(work, Actor("test", "admin"), "m1", [("p.jpg", portrait, "image/jpeg")], consent)
        buffer = io.BytesIO()
        edits.crop(Image.open(io.BytesIO(portrait)).convert("RGB"), 0.15).save(buffer, "JPEG", quality=85)
        publish(s, [sample_sets.Sample("reupload", buffer.getvalue(), "image/jpeg", "faces:1"),
                    sample_sets.Sample("empty", b"", "image/jpeg", "dlq:empty_file")], "m")
        run_pipeline(s, s.kafka.consumer_group)
        with TestClient(create_app(s, work)) as client:
            reviewer = {"Authorization": f"Bearer {create_api_key(work.sessions, 'r', 'reviewer')}"}
            assign(work, Actor("test", "admin"), "m1", "r")  # a reviewer sees the cases assigned to them
            matches = client.get("/matches", headers=reviewer).json()
            assert len(matches) == 1
            assert client.post(f"/matches/{matches[0]['id']}/review", json={"status": "confirmed"},
                               headers=reviewer).status_code == 200

        assert query(s, 'up{job="mimamori-exporter"} == 1')
        panels = [(d.uid, p) for d in load_dashboards().DASHBOARDS for p in d.panels]
        gpu_only = [(uid, p) for uid, p in panels if p.description.startswith("[gpu]")]
        waiting = [(uid, p) for uid, p in panels if (uid, p) not in gpu_only or torch.cuda.is_available()]
        deadline = time.monotonic() + 90  # a few scrapes, so that rate() has two samples
        while waiting and time.monotonic() < deadline:
            waiting = [(uid, p) for uid, p in waiting if not query(s, p.expr)]
            if waiting:
                time.sleep(3)
        assert not waiting, [f"{uid}: {p.title}: {p.expr}" for uid, p in waiting]
        assert query(s, 'up{job="mimamori-pipeline"} == 1'), "the pipeline worker was scraped"
        # Without a GPU, a GPU panel has no data; its metric is still one that mimamori defines.
        from prometheus_client import REGISTRY

        names = {metric.name for metric in REGISTRY.collect()}
        for _uid, panel in gpu_only:
            assert "mimamori_gpu_utilization_ratio" in panel.expr and "mimamori_gpu_utilization_ratio" in names


def test_a_running_api_is_scraped_under_its_own_job(stack, settings, tmp_path):
    """`mimamori api` registers itself with the local Prometheus, which scrapes it as mimamori-api."""
    import socket
    import subprocess
    import sys

    from tests.integration.helpers import site_config

    with isolated_settings(settings) as s:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        api = subprocess.Popen([sys.executable, "-m", "mimamori.cli", *site_config(s, tmp_path), "api",
                                "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            # One refused request, then its count must reach Prometheus through the API's own job.
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                assert api.poll() is None, api.stderr.read()
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/matches", timeout=5)
                except urllib.error.HTTPError as refused:
                    assert refused.code == 401
                    break
                except OSError:
                    time.sleep(1)
            counted = (f'mimamori_api_requests_total{{job="mimamori-api", instance="127.0.0.1:{port}", '
                       'route="/matches", status="401"}')
            while not query(s, counted) and time.monotonic() < deadline:
                time.sleep(2)
            assert query(s, counted), "the API's request count never reached Prometheus"
            assert query(s, f'up{{job="mimamori-api", instance="127.0.0.1:{port}"}} == 1')
        finally:
            api.terminate()
            api.wait(timeout=30)
        targets = s.stack.home / "prometheus" / "targets"
        assert not (targets / f"mimamori-api-{api.pid}.json").exists(), "a stopped API leaves no scrape target"
