"""Issue 19, acceptance 1: from a confirmed match to content that is gone, comes back, and is counted.

The match is made by the real path on the shared stack: a client's photo enrolled, an edited
re-upload published to media.scraped with a page and a media URL on a local HTTP server, the
pipeline run, the match confirmed through the API (which creates the takedown from the media's
sightings). Then, with an injected clock: the notice is sent to a local SMTP server (aiosmtpd),
the page is re-checked while the server changes (still up, gone, back: reappeared), the host's
escalation step comes due after its expected response time, and the report counts it all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import socket
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from kafka import KafkaProducer
from PIL import Image
from sqlalchemy import select

from mimamori.api.app import create_app
from mimamori.core import metrics
from mimamori.media.addresses import AddressPolicy
from mimamori.media.fetcher import Fetcher, FetchLimits
from mimamori.services import hosts, notices, takedowns
from mimamori.services.access import assign
from mimamori.services.audit import Actor
from mimamori.services.auth import create_api_key
from mimamori.services.cases import create_case
from mimamori.services.consent import ConsentRecord
from mimamori.services.enrolment import enroll
from mimamori.services.rechecks import recheck_due
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import Match
from mimamori.stores.objects import object_client
from mimamori.streams.events import MediaEvent, now_utc
from mimamori.streams.ingest import raw_object_key
from tests.integration.helpers import isolated_settings, run_pipeline
from tests.support import edits
from tests.support.http_server import LocalServer, Route

pytestmark = pytest.mark.integration

ADMIN = Actor("test-admin", "admin")
HOST = "takedown-host.test"
DIRECTORY = f"""
hosts:
  - key: takedown-host
    operator: Takedown Host Ltd.
    domains: [{HOST}]
    country: NL
    abuse_email: abuse@{HOST}
    channel: email
    language: en
    expected_response_days: 2
    recheck_hours: 24
    removal_rules:
      - {{status: [200], text: "this content has been removed"}}
    escalation:
      - {{kind: resend, after_days: 3}}
      - {{kind: upstream, name: Upstream Hosting B.V., email: abuse@upstream.test, after_days: 5}}
    verified: true
"""


class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content)
        return "250 OK"


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def publish_reupload(settings, data: bytes, source_url: str, page_url: str) -> None:
    sha = hashlib.sha256(data).hexdigest()
    key = raw_object_key(sha)
    object_client(settings).put_object(settings.minio.buckets.media.name, key, io.BytesIO(data), len(data))
    event = MediaEvent(media_id="takedown:reupload", source_url=source_url, page_url=page_url,
                       platform="takedown-host", scraped_at=now_utc(), content_type="image/jpeg", object_key=key,
                       sha256=sha)
    producer = KafkaProducer(**settings.kafka.client_options(), acks="all")
    producer.send(settings.kafka.topics.media_scraped.name, key=event.media_id.encode(), value=event.to_json())
    producer.flush()
    producer.close()


def confirmed_takedown(s, work: Workspace, site: LocalServer, portrait: bytes, reupload: bytes):
    """Enrol, stream the re-upload, confirm its match through the API: the takedown it made."""
    create_case(work, ADMIN, "td1", "Client T.")
    consent = ConsentRecord(given_by="client", given_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
                            scope=["search", "watchlist", "takedown"], recorded_by="staff")
    enroll(work, ADMIN, "td1", [("p.jpg", portrait, "image/jpeg")], consent)
    hosts.import_hosts(work, ADMIN, DIRECTORY)
    publish_reupload(s, reupload, site.url("/media/1.jpg", HOST), site.url("/post/1", HOST))
    run_pipeline(s, s.kafka.consumer_group)
    with work.sessions() as session:
        match = session.scalars(select(Match).where(Match.case_id == "td1")).one()
    with TestClient(create_app(s, work)) as client:
        reviewer = {"Authorization": f"Bearer {create_api_key(work.sessions, 'rev', 'reviewer')}"}
        assign(work, ADMIN, "td1", "rev")
        response = client.post(f"/matches/{match.id}/review", json={"status": "confirmed"}, headers=reviewer)
        assert response.status_code == 200, response.text
    [made] = takedowns.list_takedowns(work, ADMIN, case_id="td1")
    assert made.match_id == match.id and made.state == "draft" and made.host_key == "takedown-host"
    assert made.page_url == site.url("/post/1", HOST) and made.media_url == site.url("/media/1.jpg", HOST)
    assert made.media_sha256 == hashlib.sha256(reupload).hexdigest()
    return made


def test_a_confirmed_match_is_taken_down_rechecked_escalated_and_reported(stack, settings, testdata):
    portrait = (testdata / "faces" / "paul_rudd.jpg").read_bytes()
    edited = edits.crop(Image.open(io.BytesIO(portrait)).convert("RGB"), 0.15)
    reupload = jpeg(edited, 85)
    inbox = Inbox()
    with socket.socket() as probe:  # aiosmtpd needs a port of its own (it cannot take 0)
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    with isolated_settings(settings) as s, LocalServer() as site:
        s.takedowns.smtp.host, s.takedowns.smtp.port = "127.0.0.1", smtp_port
        s.takedowns.smtp.security, s.takedowns.smtp.allow_plain_loopback = "none", True
        work = Workspace(s)
        site.routes["/post/1"] = Route(body=b'<html><body><img src="/media/1.jpg"></body></html>')
        site.routes["/media/1.jpg"] = Route(body=reupload, content_type="image/jpeg")
        try:
            made = confirmed_takedown(s, work, site, portrait, reupload)
            _lifecycle(work, site, inbox, made, edited)
        finally:
            smtp.stop()


def _lifecycle(work: Workspace, site: LocalServer, inbox: Inbox, made, edited: Image.Image) -> None:
    fetcher = Fetcher(FetchLimits(timeout_s=10), policy=AddressPolicy.allowing(["127.0.0.1/32"]),
                      resolver=lambda host, port: ["127.0.0.1"] if host == HOST else [])
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=1)

    def recheck(at: dt.datetime):
        return recheck_due(work, fetcher=fetcher, clock=lambda: at)

    # The notice, over SMTP: the URLs and hashes, never the client's name or the image.
    view = notices.send_notice(work, ADMIN, [made.id], now=t0)
    assert view.method == "smtp" and view.recipient == f"abuse@{HOST}"
    [raw] = inbox.messages
    mail = message_from_bytes(raw, policy=policy.default)
    text = mail.get_body(("plain",)).get_content()
    assert made.page_url in text and made.media_sha256 in text and "Client T." not in text
    assert not any(part.get_content_maintype() == "image" for part in mail.walk())
    assert takedowns.get_takedown(work, ADMIN, made.id).takedown.state == "sent"

    # Still up an hour later: the page shows the very image.
    first = recheck(t0 + dt.timedelta(hours=1))
    assert first.checked == 1 and first.outcomes == {"still_up": 1} and first.transitions == 0
    assert recheck(t0 + dt.timedelta(hours=2)).checked == 0  # next one due a day later (the host's interval)
    assert site.requests[-1][1].startswith("mimamori-recheck/")

    # The host's expected response (2 days) passes without removal: its first ladder step comes due.
    assert [d.takedown.id for d in takedowns.due(work, ADMIN, now=t0 + dt.timedelta(days=1))] == []
    [due] = takedowns.due(work, ADMIN, now=t0 + dt.timedelta(days=2, hours=1))
    assert due.takedown.id == made.id and due.next_step.kind == "resend"
    takedowns.escalate(work, ADMIN, [made.id], now=t0 + dt.timedelta(days=2, hours=1))
    assert takedowns.due(work, ADMIN, now=t0 + dt.timedelta(days=2, hours=2)) == []
    [nxt] = takedowns.due(work, ADMIN, now=t0 + dt.timedelta(days=5, hours=2))  # the resend's 3 days
    assert nxt.next_step.kind == "upstream"

    # Gone: the host answers with its removed-content page, the media URL with 404.
    site.routes["/post/1"] = Route(body=b"<h1>Sorry, this content has been removed.</h1>")
    del site.routes["/media/1.jpg"]
    gone = recheck(t0 + dt.timedelta(days=3))
    assert gone.outcomes == {"gone": 1} and gone.transitions == 1
    detail = takedowns.get_takedown(work, ADMIN, made.id)
    assert detail.takedown.state == "removed" and detail.transitions[-1].check_id is not None

    # Back, re-encoded under another address: found by its pHash, so it reappeared (and the metric says so).
    before = metrics.TAKEDOWN_REAPPEARANCES._value.get()
    site.routes["/post/1"] = Route(body=b'<html><meta property="og:image" content="/img/again.jpg"></html>')
    site.routes["/img/again.jpg"] = Route(body=jpeg(edited, 50), content_type="image/jpeg")
    back = recheck(t0 + dt.timedelta(days=4, hours=1))
    assert back.outcomes == {"still_up": 1} and back.reappeared == [made.id]
    assert metrics.TAKEDOWN_REAPPEARANCES._value.get() == before + 1
    assert takedowns.get_takedown(work, ADMIN, made.id).takedown.state == "reappeared"
    assert [c.outcome for c in takedowns.get_takedown(work, ADMIN, made.id).checks] == ["still_up", "gone", "still_up"]

    # The report, a week and a day after the request.
    [row] = takedowns.report(work, ADMIN, by="host", now=t0 + dt.timedelta(days=8))
    assert (row.group, row.requested, row.removed, row.removal_rate, row.reappeared) == ("takedown-host", 1, 1, 1.0, 1)
    assert row.median_days_to_removal == 3.0
    assert row.still_up_7d == 1.0 and row.still_up_30d is None  # back up a week on; a month is not over yet
    [country] = takedowns.report(work, ADMIN, by="country", now=t0 + dt.timedelta(days=8))
    assert country.group == "NL" and country.requested == 1
    assert "takedown-host" in takedowns.report_csv([row])
