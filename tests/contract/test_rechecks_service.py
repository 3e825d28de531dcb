"""The re-check service as the local stack runs it: a process that serves metrics, survives SIGKILL
without losing or repeating a transition, and stops cleanly on SIGTERM (issue 19).

Real programs, no stack: the service process (``python -m mimamori.cli rechecks serve``, started
by ``RechecksService`` as ``mimamori stack up`` does), a SQLite case database and a local HTTP
server that answers slowly, so the kill lands mid-run.
"""

from __future__ import annotations

import time
import urllib.request

import pytest
from sqlalchemy import func, select

from mimamori.core.config import load_settings
from mimamori.core.waiting import wait_until
from mimamori.services.audit import Actor
from mimamori.services.cases import create_case
from mimamori.services.takedowns import create_takedown
from mimamori.services.workspace import Workspace
from mimamori.stack.process import free_port, port_in_use
from mimamori.stack.rechecks import RechecksService
from mimamori.stores.takedowns import Takedown, TakedownCheck, TakedownTransition
from tests.support.http_server import LocalServer, Route

ADMIN = Actor("test-admin", "admin")
URLS = 12


@pytest.fixture
def setup(tmp_path):
    settings = load_settings("local")
    settings.stack.home = tmp_path / "stack"
    settings.database.url = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
    settings.rechecks.metrics_address = f"127.0.0.1:{free_port()}"
    settings.rechecks.poll_interval_s = 0.5
    settings.rechecks.allow_networks = ["127.0.0.1/32"]
    settings.rechecks.workers, settings.rechecks.per_host, settings.rechecks.timeout_s = 2, 1, 5.0
    with LocalServer() as site:
        work = Workspace(settings)
        create_case(work, ADMIN, "c1", "Client")
        for i in range(URLS):
            site.routes[f"/p/{i}"] = Route(status=404, delay_s=1.0)  # gone, slowly: one at a time on this host
            create_takedown(work, ADMIN, "c1", site.url(f"/p/{i}"), media_sha256=f"{i:064x}")
        service = RechecksService(settings)
        try:
            yield settings, work, site, service
        finally:
            service.stop()


def checks(work) -> int:
    with work.sessions() as session:
        return session.scalar(select(func.count()).select_from(TakedownCheck))


def test_the_service_serves_metrics_resumes_after_sigkill_and_stops_cleanly_on_sigterm(setup):
    settings, work, site, service = setup
    assert service.start()
    metrics = urllib.request.urlopen(f"http://{settings.rechecks.metrics_address}/metrics", timeout=5).read().decode()
    assert 'mimamori_recheck_outcomes_total{outcome="gone"}' in metrics
    assert list((settings.stack.home / "prometheus" / "targets").glob("mimamori-rechecks-*.json"))
    wait_until(lambda: checks(work) >= 3, 60, "three re-checks recorded")
    pid = service.processes()[0].pid()
    service.processes()[0]._signal(pid, 9)  # SIGKILL mid-run: what was in flight is not recorded
    host, port = settings.rechecks.metrics_address.split(":")
    # Its leader thread is a zombie before the last thread has closed the sockets: wait for both.
    wait_until(lambda: not service.running() and not port_in_use(host, int(port)), 10, "the killed service to be gone")
    killed_at = checks(work)
    assert killed_at < URLS, "the kill came too late to land mid-run"
    assert service.start()
    wait_until(lambda: checks(work) == URLS, 90, "every takedown re-checked")
    time.sleep(1.5)  # three more polls: nothing is due, nothing is repeated
    with work.sessions() as session:
        per_takedown = dict(session.execute(select(TakedownCheck.takedown_id, func.count())
                                            .group_by(TakedownCheck.takedown_id)).all())
        removals = dict(session.execute(select(TakedownTransition.takedown_id, func.count())
                                        .where(TakedownTransition.to_state == "removed")
                                        .group_by(TakedownTransition.takedown_id)).all())
        states = set(session.scalars(select(Takedown.state)))
    assert len(per_takedown) == URLS and set(per_takedown.values()) == {1}
    assert len(removals) == URLS and set(removals.values()) == {1}
    assert states == {"removed"}

    # SIGTERM mid-run: nothing new starts, the fetches in flight finish and are recorded.
    asked = len(site.requests)
    for i in range(URLS, URLS + 6):
        site.routes[f"/p/{i}"] = Route(status=410, delay_s=1.0)
        create_takedown(work, ADMIN, "c1", site.url(f"/p/{i}"), media_sha256=f"{i:064x}")
    wait_until(lambda: len(site.requests) > asked, 30, "new fetches under way")
    began, pid = time.monotonic(), service.processes()[0].pid()
    assert service.stop()
    assert time.monotonic() - began < 15
    assert "rechecks: stopped" in service.processes()[0].log_file.read_text()
    # Every page asked for since was recorded, the one in flight too; the rest waits for the next start.
    assert checks(work) - URLS == len(site.requests) - asked < 6
    # Its scrape target is gone (the SIGKILLed one's stays until forget_dead_targets sees it dead).
    assert not (settings.stack.home / "prometheus" / "targets" / f"mimamori-rechecks-{pid}.json").exists()
