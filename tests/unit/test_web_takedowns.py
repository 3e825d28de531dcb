"""The workbench's takedown pages (mimamori/web/routes/takedowns.py, notices.py, hosts.py,
takedown_report.py) on in-memory stores: confirming a match in the queue makes its takedown and
says so; the list with what is due and what is overdue; one takedown's history and its
transitions as forms; a notice previewed, downloaded as .eml (checked) and stored; the host
directory edited by admins only; the report's charts and CSV; access by case throughout."""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import io
import re

import pytest
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.services import hosts, notices, takedowns
from mimamori.services.consent import ConsentRecord, record_consent
from mimamori.stores.cases import AuditEvent
from mimamori.stores.face_search import Sighting
from mimamori.stores.takedowns import Notice, Takedown, TakedownTransition
from mimamori.web import charts
from mimamori.web.i18n import translations
from tests.support.web import (
    OPERATOR,
    add_case_with_match,
    cheap_passwords,
    crop_jpeg,
    csrf_of,
    make_user,
    signed_in_client,
)
from tests.support.workspace import IndexedFace, MemoryWorkspace, unit

PAGE = "https://example-tube.com/watch/1"
MEDIA = "https://cdn.example-tube.com/v/1.jpg"
SHA = "a" * 64


def sighting(page: str, media: str, platform: str = "example-tube") -> Sighting:
    return Sighting("m1", media, page, platform, None, "2026-11-30T10:00:00+00:00", "original")


@pytest.fixture
def work(tmp_path, monkeypatch) -> MemoryWorkspace:
    cheap_passwords(monkeypatch)
    faces = [IndexedFace(7, SHA, unit(1, 0), sightings=[sighting(PAGE, MEDIA)]),
             IndexedFace(8, "b" * 64, unit(0, 1), sightings=[sighting("https://other.example.net/p/2",
                                                                      "https://other.example.net/i/2.jpg", "web")])]
    work = MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {}, faces)
    for name, role in (("anna", "reviewer"), ("bob", "reviewer"), ("ada", "admin"), ("otto", "auditor")):
        make_user(work, name, role)
    add_case_with_match(work, "c1", 7, SHA, crop=crop_jpeg(), reference=crop_jpeg(seed=2), assigned=("anna",))
    add_case_with_match(work, "c2", 8, "b" * 64, crop=crop_jpeg(seed=3), reference=crop_jpeg(seed=4),
                        assigned=("bob",))
    now = dt.datetime.now(dt.UTC)
    for case_id in ("c1", "c2"):
        record_consent(work, OPERATOR, case_id, ConsentRecord(
            given_by="client", given_at=now - dt.timedelta(days=1), scope=["search", "watchlist", "takedown"],
            expires_at=now + dt.timedelta(days=30), recorded_by="staff"))
    hosts.save_host(work, OPERATOR, hosts.HostEntry(
        key="example-tube", operator="Example Tube Inc.", domains=["example-tube.com"], country="US",
        abuse_email="abuse@example-tube.com", verified=True, expected_response_days=3,
        escalation=[hosts.EscalationStep(kind="resend"),
                    hosts.EscalationStep(kind="upstream", name="Upstream Hosting", email="abuse@upstream.example")]))
    return work


def confirm(client, match_id: int) -> str:
    """Confirm a match from the queue page as a reviewer does; the page the answer leads to."""
    page = client.get("/queue")
    answer = client.post(f"/matches/{match_id}/decision", data={"csrf_token": csrf_of(page.text),
                                                               "decision": "confirmed", "back": "/queue"})
    assert answer.status_code == 303, answer.text[:300]
    return client.get(answer.headers["location"]).text


def takedown_rows(work) -> list[Takedown]:
    with work.sessions() as session:
        return list(session.scalars(select(Takedown).order_by(Takedown.id)))


def test_confirming_a_match_in_the_queue_makes_its_takedown_and_the_pages_link_it(work):
    anna = signed_in_client(work, "anna")
    after = confirm(anna, 1)
    [made] = takedown_rows(work)
    assert (made.case_id, made.match_id, made.page_url, made.host_key, made.state) == \
        ("c1", 1, PAGE, "example-tube", "draft")
    link = f'href="/takedowns/{made.id}"'
    assert link in after and f"takedown #{made.id}" in after and 'id="confirmed-takedowns"' in after
    assert link in anna.get("/matches/1").text  # the match page says it too
    assert 'id="confirmed-takedowns"' not in anna.get("/queue?confirmed_case=c2&confirmed=2").text  # not hers
    assert 'id="confirmed-takedowns"' not in anna.get("/queue?confirmed_case=c1&confirmed=1;drop").text
    page = anna.get(f"/takedowns/{made.id}")
    assert page.status_code == 200 and PAGE in page.text and f'href="{PAGE}"' not in page.text  # text, no link
    assert "<img" not in page.text  # no image on a takedown's page


def test_the_list_filters_and_says_what_is_due_today_and_what_is_overdue(work):
    made = takedowns.create_takedown(work, OPERATOR, "c1", PAGE, media_sha256=SHA)
    other = takedowns.create_takedown(work, OPERATOR, "c1", "https://unknown-host.example.org/a")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    notices.record_web_form(work, OPERATOR, [made.id], now=long_ago)  # sent 10 days ago, 3 days expected
    anna = signed_in_client(work, "anna")
    page = anna.get("/takedowns")
    assert page.status_code == 200
    assert 'id="overdue-count" data-count="1"' in page.text and "1 step overdue" in page.text
    due = re.search(r'<article class="due-group overdue" data-host="example-tube" data-step="0"[^>]*>(.*?)</article>',
                    page.text, re.S)
    assert due and f'/takedowns/{made.id}"' in due.group(1) and "7 days overdue" in due.group(1)
    assert f"takedown_id={made.id}&amp;step=0" in due.group(1)  # the notice of the next step, prepared
    assert "unknown host: add a contact" not in page.text  # a reviewer is told an admin adds it
    assert "unknown host: an admin adds its contact" in page.text
    sent = anna.get("/takedowns", params={"state": "sent"}).text
    assert f'data-takedown-id="{made.id}" data-state="sent"' in sent and f'data-takedown-id="{other.id}"' not in sent
    unknown = anna.get("/takedowns", params={"host": other.host_key}).text
    assert f'data-takedown-id="{other.id}"' in unknown and f'data-takedown-id="{made.id}" ' not in unknown
    assert f'data-takedown-id="{other.id}"' in anna.get("/takedowns?needs_action=true").text
    admin = signed_in_client(work, "ada").get("/takedowns").text
    assert 'href="/hosts/new?domain=example.org"' in admin  # registrable domain of unknown-host.example.org
    bob = signed_in_client(work, "bob")
    assert f'data-takedown-id="{made.id}"' not in bob.get("/takedowns").text
    assert bob.get(f"/takedowns/{made.id}").status_code == 403
    assert signed_in_client(work, "otto").get("/takedowns").status_code == 403  # auditors read the log only


def test_a_transition_is_a_form_with_its_note_and_removed_needs_a_statement(work):
    made = takedowns.create_takedown(work, OPERATOR, "c1", PAGE, media_sha256=SHA)
    notices.record_web_form(work, OPERATOR, [made.id])
    anna = signed_in_client(work, "anna")
    page = anna.get(f"/takedowns/{made.id}")
    allowed = re.findall(r'name="to_state" value="([a-z_]+)"', page.text)
    assert allowed == ["acknowledged", "removed", "refused", "no_response", "closed"]
    csrf = csrf_of(page.text)
    refused = anna.post(f"/takedowns/{made.id}/transition", data={"csrf_token": csrf, "to_state": "removed"})
    assert refused.status_code == 422 and 'id="transition-error"' in refused.text and "statement" in refused.text
    illegal = anna.post(f"/takedowns/{made.id}/transition", data={"csrf_token": csrf, "to_state": "reappeared"})
    assert illegal.status_code == 409 and 'id="transition-error"' in illegal.text
    done = anna.post(f"/takedowns/{made.id}/transition",
                     data={"csrf_token": csrf, "to_state": "removed", "note": "the page says 404 since 10:00"})
    assert done.status_code == 303 and done.headers["location"] == f"/takedowns/{made.id}?done=transition"
    shown = anna.get(done.headers["location"]).text
    assert 'data-from="sent" data-to="removed"' in shown and "the page says 404 since 10:00" in shown
    assert re.search(r"<td>anna \(reviewer\)</td><td>the page says 404", shown)
    with work.sessions() as session:
        last = session.scalars(select(TakedownTransition).order_by(TakedownTransition.id.desc())).first()
    assert (last.to_state, last.actor, last.evidence) == ("removed", "anna", {"kind": "statement"})
    bob = signed_in_client(work, "bob")
    assert bob.post(f"/takedowns/{made.id}/transition", data={
        "csrf_token": csrf_of(bob.get("/account").text), "to_state": "closed"}).status_code == 403


def test_a_notice_is_previewed_then_downloaded_as_eml_and_stored_as_sent(work):
    first = takedowns.create_takedown(work, OPERATOR, "c1", PAGE, media_sha256=SHA)
    second = takedowns.create_takedown(work, OPERATOR, "c1", "https://www.example-tube.com/watch/9")
    anna = signed_in_client(work, "anna")
    listing = anna.get("/notices").text
    assert f'href="/notices/preview?takedown_id={first.id}&amp;takedown_id={second.id}"' in listing
    preview = anna.get("/notices/preview", params={"takedown_id": [first.id, second.id]})
    assert preview.status_code == 200
    text = re.search(r'<textarea id="notice-text"[^>]*>(.*?)</textarea>', preview.text, re.S).group(1)
    assert PAGE in text and SHA in text and "Client c1" not in text and "c1" not in text
    assert 'id="copy-notice"' in preview.text and 'id="smtp-off"' in preview.text  # no SMTP server configured
    assert 'abuse@example-tube.com' in preview.text and "<img" not in preview.text
    with work.sessions() as session:
        assert session.scalars(select(Notice)).first() is None  # a preview stores nothing
    japanese = anna.get("/notices/preview", params={"takedown_id": [first.id], "language": "ja"})
    assert 'option value="ja" selected' in japanese.text
    answer = anna.post("/notices/eml", data={"csrf_token": csrf_of(preview.text),
                                             "takedown_id": [str(first.id), str(second.id)], "language": "en"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("message/rfc822")
    assert re.fullmatch(r'attachment; filename="notice-\d+-example-tube\.eml"', answer.headers["content-disposition"])
    message = email.message_from_bytes(answer.content, policy=email.policy.default)
    assert message["To"] == "abuse@example-tube.com" and message["Subject"]
    body = message.get_content()
    assert PAGE in body and "https://www.example-tube.com/watch/9" in body and SHA in body and "Client" not in body
    assert not [part for part in message.walk() if part.get_content_maintype() == "image"]
    with work.sessions() as session:
        [stored] = session.scalars(select(Notice)).all()
        assert stored.method == "eml" and stored.body.strip() == body.replace("\r\n", "\n").strip()
    assert {t.state for t in takedown_rows(work)} == {"sent"}
    page = anna.get(f"/notices/{stored.id}")
    assert page.status_code == 200 and PAGE in page.text and "downloaded as .eml" in page.text
    assert f'href="/notices/{stored.id}"' in anna.get(f"/takedowns/{first.id}").text
    again = anna.post("/notices/eml", data={"csrf_token": csrf_of(preview.text), "takedown_id": [str(first.id)]})
    assert again.status_code == 409 and 'id="notice-error"' in again.text  # sent already: the next step, not this
    assert signed_in_client(work, "bob").get(f"/notices/{stored.id}").status_code == 404  # not of bob's cases


def test_a_notice_over_smtp_is_refused_on_the_page_when_no_server_is_configured(work):
    made = takedowns.create_takedown(work, OPERATOR, "c1", PAGE, media_sha256=SHA)
    anna = signed_in_client(work, "anna")
    csrf = csrf_of(anna.get("/account").text)
    answer = anna.post("/notices/send", data={"csrf_token": csrf, "takedown_id": str(made.id)})
    assert answer.status_code == 409 and 'id="notice-error"' in answer.text and "Sending from mimamori is off" \
        in answer.text and 'id="notice-text"' in answer.text  # said on the preview, whose other ways stay open
    assert takedown_rows(work)[0].state == "draft"
    web_form = anna.post("/notices/web-form", data={"csrf_token": csrf, "takedown_id": str(made.id)})
    assert web_form.status_code == 303
    assert "typed into the web form" in anna.get(web_form.headers["location"]).text


def test_admins_edit_the_host_directory_and_an_unknown_host_gets_its_contact(work):
    made = takedowns.create_takedown(work, OPERATOR, "c1", "https://files.unknown-host.org/x/1")
    admin = signed_in_client(work, "ada")
    page = admin.get("/hosts")
    assert 'data-domain="unknown-host.org"' in page.text and 'href="/hosts/new?domain=unknown-host.org"' in page.text
    assert "Contacts must be verified by the organisation" in page.text
    form = admin.get("/hosts/new", params={"domain": "unknown-host.org"})
    assert 'value="unknown-host.org"' in form.text
    csrf = csrf_of(form.text)
    fields = {"csrf_token": csrf, "key": "unknown-host.org", "operator": "Unknown Host Ltd",
              "domains": "unknown-host.org", "country": "nl", "channel": "web_form", "abuse_form_url": "https://unknown-host.org/abuse",
              "language": "en", "expected_response_days": "5", "escalation": "- kind: resend\n- kind: hotline\n"
              "  name: Meldpunt\n  form_url: https://meldpunt.example/report\n", "verified": "on"}
    wrong = admin.post("/hosts", data={**fields, "abuse_form_url": "http://plain.example", "escalation": "- kind: x"})
    assert wrong.status_code == 422 and 'id="host-error"' in wrong.text
    assert "Abuse web form (https)" in wrong.text and "Escalation ladder" in wrong.text  # the form's labels
    assert 'value="Unknown Host Ltd"' in wrong.text  # what was typed is kept
    saved = admin.post("/hosts", data=fields)
    assert saved.status_code == 303 and saved.headers["location"] == "/hosts?done=saved"
    entry = hosts.get_host(work, OPERATOR, "unknown-host.org")
    assert (entry.country, entry.channel) == ("NL", "web_form")
    assert [s.kind for s in entry.escalation] == ["resend", "hotline"]
    assert takedown_rows(work)[0].host_key == "unknown-host.org"  # moved to its new entry
    assert 'data-domain="unknown-host.org"' not in admin.get("/hosts").text
    reviewer = signed_in_client(work, "anna")
    shown = reviewer.get("/hosts/unknown-host.org")
    assert shown.status_code == 200 and "<fieldset disabled>" in shown.text and 'id="host-save"' not in shown.text
    assert reviewer.post("/hosts", data={**fields, "csrf_token": csrf_of(shown.text)}).status_code == 403
    assert reviewer.get("/hosts/new").status_code == 403
    exported = reviewer.get("/hosts.yaml")
    assert exported.headers["content-disposition"] == 'attachment; filename="hosts.yaml"'
    assert "verified by the organisation" in exported.text and "key: unknown-host.org" in exported.text
    assert admin.post("/hosts/example-tube/delete", data={"csrf_token": csrf}).status_code == 303
    imported = admin.post("/hosts/import", data={"csrf_token": csrf},
                          files={"directory": ("hosts.yaml", exported.text.encode(), "application/yaml")})
    assert imported.status_code == 303 and "created=1" in imported.headers["location"]
    assert "1 new, 1 replaced" in admin.get(imported.headers["location"]).text
    broken = admin.post("/hosts/import", data={"csrf_token": csrf},
                        files={"directory": ("hosts.yaml", b"hosts: [{key: 'NO SPACES'}]", "application/yaml")})
    assert broken.status_code == 422 and 'id="import-error"' in broken.text
    assert made.id


def report_fixture(work) -> tuple[int, int]:
    """Two takedowns asked for 40 days ago; one removed after 2 days, the other still up."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    removed = takedowns.create_takedown(work, OPERATOR, "c1", PAGE, media_sha256=SHA, now=start)
    up = takedowns.create_takedown(work, OPERATOR, "c1", "https://example-tube.com/watch/2", now=start)
    notices.record_web_form(work, OPERATOR, [removed.id, up.id], now=start)
    takedowns.transition(work, OPERATOR, removed.id, "removed", note="gone, checked by hand",
                         now=start + dt.timedelta(days=2))
    return removed.id, up.id


def test_the_report_page_draws_its_charts_and_downloads_its_table(work):
    report_fixture(work)
    anna = signed_in_client(work, "anna")
    page = anna.get("/takedowns/report", params={"by": "host"})
    assert page.status_code == 200
    for chart in ("months", "removal-rate", "median-days", "still-up"):
        assert f'id="chart-{chart}"' in page.text, chart
    rate = re.search(r'id="chart-removal-rate".*?</figure>', page.text, re.S).group(0)
    assert 'data-label="example-tube" data-value="0.5"' in rate and "50 %" in rate
    median = re.search(r'id="chart-median-days".*?</figure>', page.text, re.S).group(0)
    assert 'data-value="2"' in median
    months = re.search(r'id="chart-months".*?</figure>', page.text, re.S).group(0)
    assert 'data-series="requested" data-value="2"' in months and 'data-series="removed" data-value="1"' in months
    assert re.search(r'data-group="example-tube" data-requested="2" data-removed="1"', page.text)
    assert "style=" not in page.text
    month = re.search(r'data-month="(\d{4}-\d{2})"', page.text).group(1)
    assert 'data-requested="2"' in anna.get("/takedowns/report", params={"month": month}).text
    assert 'id="no-report-rows"' in anna.get("/takedowns/report", params={"month": "2001-01"}).text
    assert anna.get("/takedowns/report", params={"month": "2026-13"}).status_code == 422
    download = anna.get("/takedowns/report.csv", params={"by": "host"})
    assert download.headers["content-type"].startswith("text/csv")
    [row] = list(csv.DictReader(io.StringIO(download.text)))
    assert (row["group"], row["requested"], row["removed"], row["removal_rate"]) == ("example-tube", "2", "1", "0.5")
    assert row["still_up_30d"] == "0.5"
    assert 'data-requested' not in signed_in_client(work, "bob").get("/takedowns/report").text  # not bob's case
    japanese = translations("ja").gettext
    assert japanese("Removal rate") != "Removal rate"


def test_the_takedown_pages_are_in_japanese_for_a_japanese_reader(work):
    from mimamori.services import users

    removed, _up = report_fixture(work)
    anna = signed_in_client(work, "anna")
    users.set_preferences(work, users.signed_in(work, anna.cookies.get("mimamori_session")), language="ja")
    for path in ("/takedowns", f"/takedowns/{removed}", "/notices", "/hosts", "/takedowns/report"):
        page = anna.get(path)
        assert page.status_code == 200 and 'lang="ja"' in page.text, path
        assert "削除" in page.text or "通知" in page.text or "ホスト" in page.text, path


def test_bar_and_column_charts_draw_their_values_with_classes_only():
    bars = [charts.Bar("example.com", 0.5, "50 %"), charts.Bar("a" * 40, 1.0, "100 %"), charts.Bar("<x>", 0.0, "0 %")]
    svg = charts.bar_chart(bars, top=1.0, label="Removal rate")
    assert svg.count('<rect class="chart-bar"') == 3 and 'data-value="0.5"' in svg and 'data-value="1"' in svg
    assert "&lt;x&gt;" in svg and "<x>" not in svg and "…" in svg and 'aria-label="Removal rate"' in svg
    assert "style=" not in svg
    widths = [float(w) for w in re.findall(r'class="chart-bar" x="\d+" y="[\d.]+" width="([\d.]+)"', svg)]
    assert widths[1] == 2 * widths[0] and widths[2] == 0
    columns = charts.column_chart(["2026-10", "2026-11"], [charts.Series("requested", [4, 10]),
                                                           charts.Series("removed", [2, 0])],
                                  gettext=translations("ja").gettext)
    assert columns.count("chart-series-0") == 3 and columns.count("chart-series-1") == 3  # two columns and a key
    assert 'data-series="removed" data-value="0"' in columns and "最大 10" in columns
    assert "<rect" not in charts.bar_chart([]) and "<svg" in charts.column_chart([], [])
    unknown = charts.column_chart(["a"], [charts.Series("7 d", [50.0]), charts.Series("30 d", [None])])
    assert 'data-series="7 d"' in unknown and 'data-series="30 d"' not in unknown  # not known: no column
    japanese = charts.column_chart(["a"], [charts.Series("7 日後も掲載", [1]), charts.Series("30 日後も掲載", [1])])
    keys = [float(x) for x in re.findall(r'chart-key" x="([\d.]+)"', japanese)]
    assert keys[1] - keys[0] >= 12 + 5 * 10 + 2 * 6  # the second key after the first's name (full-width characters)


def test_every_takedown_action_is_audited_under_the_staff_members_name(work):
    made = takedowns.create_takedown(work, OPERATOR, "c1", PAGE, media_sha256=SHA)
    anna = signed_in_client(work, "anna")
    anna.get("/takedowns")
    anna.get(f"/takedowns/{made.id}")
    anna.get("/notices/preview", params={"takedown_id": made.id})
    with work.sessions() as session:
        actions = {e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.actor == "anna"))}
    assert {"view_takedowns", "view_takedown", "notice_preview", "view_due"} <= actions


def test_a_due_step_is_prepared_as_its_notice_or_taken_by_hand(work):
    made = takedowns.create_takedown(work, OPERATOR, "c1", PAGE, media_sha256=SHA)
    notices.record_web_form(work, OPERATOR, [made.id], now=dt.datetime.now(dt.UTC) - dt.timedelta(days=4))
    anna = signed_in_client(work, "anna")
    page = anna.get("/takedowns")
    assert "step 1: re-send to the host" in page.text
    resend = anna.get("/notices/preview", params={"takedown_id": made.id, "step": 0})
    assert 'id="notice-step" data-step="0"' in resend.text and "abuse@example-tube.com" in resend.text
    assert 'name="step" value="0"' in resend.text  # the step goes with each way out
    taken = anna.post("/takedowns/escalate", data={"csrf_token": csrf_of(page.text), "takedown_ids": str(made.id),
                                                   "note": "re-sent from the shared mailbox"})
    assert taken.status_code == 303 and taken.headers["location"] == "/takedowns?done=escalated"
    [row] = takedown_rows(work)
    assert (row.state, row.escalation_step) == ("escalated", 1)
    upstream = anna.get("/notices/preview", params={"takedown_id": made.id, "step": 1})
    assert "abuse@upstream.example" in upstream.text and "the upstream hosting provider" in upstream.text
    sent = anna.post("/notices/eml", data={"csrf_token": csrf_of(page.text), "takedown_id": str(made.id),
                                           "step": "1"})
    assert sent.status_code == 200 and b"To: abuse@upstream.example" in sent.content
    assert takedown_rows(work)[0].escalation_step == 2
    bob = signed_in_client(work, "bob")
    assert bob.post("/takedowns/escalate", data={"csrf_token": csrf_of(bob.get("/account").text),
                                                 "takedown_ids": str(made.id)}).status_code == 403
