"""Takedowns (issue 19) on SQLite with the in-memory face index: the service layer of everything else.

The state machine as the database enforces it, creation on confirmation and by hand (idempotent),
the host directory, notices in English and Japanese (no image, no client name) and their .eml,
escalation with an injected clock, the re-check API (idempotent by check id), reports on a
constructed history, access by case, and withdrawal.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.core.errors import Conflict, ConsentMissing, Forbidden, InvalidInput, Misconfigured, NotFound
from mimamori.services import cases, hosts, matches, notices, queue, takedowns
from mimamori.services.audit import Actor
from mimamori.stores.cases import AuditEvent, Case, CaseAssignment, Consent, Match
from mimamori.stores.face_search import Sighting
from mimamori.stores.takedowns import Notice, Takedown, TakedownCheck, TakedownTransition
from tests.support.workspace import IndexedFace, MemoryWorkspace, unit

ADMIN, ANNA, BEN = Actor("ada", "admin"), Actor("anna", "reviewer"), Actor("ben", "reviewer")
AUDITOR = Actor("aud", "auditor")
T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
SHA = "ab" * 32
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "hosts.example.yaml"
TUBE = {"key": "tube", "operator": "Tube Ltd", "domains": ["tube.example"], "country": "NL",
        "abuse_email": "abuse@tube.example", "channel": "email", "language": "en",
        "legal_basis": "Art. 16 Digital Services Act", "expected_response_days": 3, "recheck_hours": 12,
        "removal_rules": [{"status": [200], "text": "This video was removed"}],
        "escalation": [{"kind": "resend", "after_days": 2},
                       {"kind": "upstream", "name": "Hoster BV", "email": "abuse@hoster.example", "after_days": 5},
                       {"kind": "regulator", "name": "The regulator", "form_url": "https://regulator.example/report"}],
        "verified": True}


@pytest.fixture
def work(tmp_path) -> MemoryWorkspace:
    settings = load_settings("local")
    settings.takedowns.organisation.name = "Helping Hands"
    settings.takedowns.organisation.email = "takedowns@helping.example"
    return MemoryWorkspace(settings, tmp_path / "cases.sqlite3", {})


def open_case(work: MemoryWorkspace, case_id: str, *assignees: str, consent: bool = True) -> None:
    with work.sessions.begin() as session:
        session.add(Case(id=case_id, display_name=f"Secret Name {case_id}", created_by="ada"))
        session.flush()
        session.add_all(CaseAssignment(case_id=case_id, username=name, assigned_by="ada") for name in assignees)
        if consent:
            session.add(Consent(case_id=case_id, given_by="the client", relationship_to_client="self",
                                given_at=T0 - dt.timedelta(days=30), scope=["search", "watchlist", "takedown"],
                                recorded_by="ada"))


def add_match(work: MemoryWorkspace, case_id: str, face_id: int, sha: str, *pages: str) -> int:
    seen = [Sighting(f"m-{face_id}-{n}", page if page.startswith("file:") else f"https://cdn.tube.example/{face_id}.jpg",
                     page, "tube",
                     None, "2026-11-01T08:00:00+00:00", "original") for n, page in enumerate(pages)]
    work.index.faces.append(IndexedFace(face_id, sha, unit(1, 0), sightings=seen))
    with work.sessions.begin() as session:
        match = Match(case_id=case_id, face_id=face_id, media_sha256=sha, model_version="memory/v1",
                      similarity=0.97, source="stream", media_phash="f0e1d2c3b4a59687", created_at=T0)
        session.add(match)
        session.flush()
        return match.id


def directory(work: MemoryWorkspace, *entries: dict) -> None:
    hosts.import_hosts(work, ADMIN, yaml.safe_dump({"hosts": list(entries or [TUBE])}), now=T0)


def manual(work, case_id="c1", page="https://tube.example/watch/1", actor=ADMIN, **extra) -> takedowns.TakedownView:
    return takedowns.create_takedown(work, actor, case_id, page, media_sha256=extra.pop("sha", SHA), now=T0, **extra)


def states(work: MemoryWorkspace, takedown_id: int) -> list[tuple[str, str]]:
    with work.sessions() as session:
        return [(t.from_state, t.to_state) for t in session.scalars(
            select(TakedownTransition).where(TakedownTransition.takedown_id == takedown_id)
            .order_by(TakedownTransition.id))]


# -- the state machine (the database's own refusals: tests/support/case_database.py) -----------------
def test_the_service_refuses_what_the_state_machine_does_not_allow_and_removal_needs_evidence(work):
    open_case(work, "c1")
    takedown = manual(work)
    with pytest.raises(Conflict, match="cannot become acknowledged"):
        takedowns.transition(work, ADMIN, takedown.id, "acknowledged", now=T0)
    with pytest.raises(InvalidInput, match="on evidence") as refused:
        takedowns.transition(work, ADMIN, takedown.id, "removed", now=T0)
    assert refused.value.reason == "removal_needs_evidence"
    with pytest.raises(InvalidInput, match="is one of"):
        takedowns.transition(work, ADMIN, takedown.id, "gone", now=T0)
    removed = takedowns.transition(work, ADMIN, takedown.id, "removed", note="the page says 'removed' (checked 10:02)",
                                   now=T0)
    assert (removed.state, removed.removed_at) == ("removed", T0)
    detail = takedowns.get_takedown(work, ADMIN, takedown.id)
    assert detail.transitions[-1].evidence == {"kind": "statement"} and detail.transitions[-1].actor == "ada"
    rows = [r for r in _audit(work, "takedown_transition")]
    assert rows[-1].outcome == "ok" and rows[-1].details["to"] == "removed"
    assert any(r.outcome == "rejected" and r.details.get("reason") == "illegal_transition" for r in rows)


def _audit(work, action: str) -> list[AuditEvent]:
    with work.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


# -- creation -------------------------------------------------------------------------------------
def test_confirming_a_match_creates_its_takedowns_in_the_same_transaction_once(work):
    open_case(work, "c1", "anna")
    directory(work)
    match_id = add_match(work, "c1", 7, SHA, "https://tube.example/watch/7", "https://other.example/p/7",
                         "file:///home/staff/local.jpg")
    queue.decide(work, ANNA, match_id, "confirmed")
    made = takedowns.list_takedowns(work, ANNA, case_id="c1")
    assert sorted((t.page_url, t.host_key, t.country) for t in made) == [
        ("https://other.example/p/7", "unknown:other.example", None), ("https://tube.example/watch/7", "tube", "NL")]
    tube = next(t for t in made if t.host_key == "tube")
    assert (tube.state, tube.match_id, tube.media_sha256, tube.media_phash, tube.platform) == (
        "draft", match_id, SHA, "f0e1d2c3b4a59687", "tube")
    assert tube.found_at == dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC) and tube.needs_action
    # The same decision again, or another reviewer's confirmation: no second takedown.
    queue.decide(work, ANNA, match_id, "confirmed")
    matches.review(work, ADMIN, match_id, "confirmed", note="sure")
    assert len(takedowns.list_takedowns(work, ADMIN)) == 2
    assert len(_audit(work, "create_takedown")) == 2
    # Taken back: the drafts close; confirmed again: they open again.
    matches.review(work, ADMIN, match_id, "rejected")
    assert {t.state for t in takedowns.list_takedowns(work, ADMIN)} == {"closed"}
    matches.review(work, ADMIN, match_id, "confirmed")
    assert {t.state for t in takedowns.list_takedowns(work, ADMIN)} == {"draft"}


def test_a_confirmation_whose_takedown_fails_is_not_recorded_either(work, monkeypatch):
    open_case(work, "c1", "anna")
    match_id = add_match(work, "c1", 7, SHA, "https://tube.example/watch/7")

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(takedowns, "create_for_match", broken)
    with pytest.raises(RuntimeError):
        queue.decide(work, ANNA, match_id, "confirmed")
    with work.sessions() as session:
        assert session.get(Match, match_id).status == "pending_review"
        assert not list(session.scalars(select(Takedown)))


def test_manual_creation_is_idempotent_checked_and_by_case(work):
    open_case(work, "c1", "anna")
    open_case(work, "c2", "ben")
    first = manual(work, actor=ANNA, platform="tube", note="found by staff")
    again = manual(work, actor=ANNA)
    assert first.id == again.id and len(takedowns.list_takedowns(work, ADMIN)) == 1
    other_media = manual(work, actor=ANNA, sha="cd" * 32)
    no_media = takedowns.create_takedown(work, ANNA, "c1", "https://tube.example/watch/1", now=T0)
    assert len({first.id, other_media.id, no_media.id}) == 3 and no_media.media_sha256 is None
    assert takedowns.create_takedown(work, ANNA, "c1", "https://tube.example/watch/1", now=T0).id == no_media.id
    for bad in ("ftp://tube.example/x", "https://", "javascript:alert(1)", "https://tube.example/a b",
                "https://tube.example/\r\nBcc: x@y"):
        with pytest.raises(InvalidInput):
            takedowns.create_takedown(work, ANNA, "c1", bad, now=T0)
    with pytest.raises(InvalidInput, match="sha256"):
        takedowns.create_takedown(work, ANNA, "c1", "https://tube.example/2", media_sha256="XYZ", now=T0)
    with pytest.raises(Forbidden):
        manual(work, "c1", actor=BEN)
    with pytest.raises(Forbidden):
        takedowns.get_takedown(work, BEN, first.id)
    with pytest.raises(Forbidden):
        manual(work, "c1", actor=AUDITOR)
    assert takedowns.list_takedowns(work, BEN) == []
    assert [t.id for t in takedowns.list_takedowns(work, ANNA, needs_action=True)] == sorted(
        [first.id, other_media.id, no_media.id], reverse=True)


# -- host directory -------------------------------------------------------------------------------
def test_the_host_directory_imports_exports_and_groups_unknown_hosts_by_registrable_domain(work):
    open_case(work, "c1")
    for page in ("https://a.b.files.example.co.uk/x", "https://files.example.co.uk/y", "https://tube.example/z"):
        manual(work, page=page)
    unknown = hosts.unknown_hosts(work, ADMIN)
    assert [(u.registrable_domain, u.takedowns) for u in unknown] == [("example.co.uk", 2), ("tube.example", 1)]
    result = hosts.import_hosts(work, ADMIN, EXAMPLE.read_text(), now=T0)
    assert result.created >= 3 and result.updated == 0
    entries = {e.key: e for e in hosts.list_hosts(work, ADMIN)}
    assert all(not e.verified for e in entries.values())  # the example's contacts are not verified
    directory(work)  # tube.example now has an entry: its takedown moves to it
    assert [u.registrable_domain for u in hosts.unknown_hosts(work, ADMIN)] == ["example.co.uk"]
    assert {t.host_key for t in takedowns.list_takedowns(work, ADMIN)} == {"tube", "unknown:example.co.uk"}
    exported = hosts.export_hosts(work, ADMIN)
    assert "verified by the organisation" in exported
    again = hosts.parse_hosts(exported)
    assert {e.key for e in again} == set(entries) | {"tube"}
    with pytest.raises(InvalidInput, match="not valid") as bad:
        hosts.import_hosts(work, ADMIN, yaml.safe_dump({"hosts": [{**TUBE, "domains": ["not a domain"]},
                                                                   {**TUBE, "key": "x", "channel": "fax"}]}))
    assert "domains" in str(bad.value) and "channel" in str(bad.value)
    with pytest.raises(Forbidden):
        hosts.import_hosts(work, ANNA, EXAMPLE.read_text())
    assert hosts.registrable_domain("https://WWW.Example.COM./x") == "example.com"
    assert hosts.registrable_domain("http://192.0.2.7:8080/") == "192.0.2.7"
    moved = hosts.delete_host(work, ADMIN, "tube")
    assert moved == 1 and {t.host_key for t in takedowns.list_takedowns(work, ADMIN)} == {
        "unknown:tube.example", "unknown:example.co.uk"}


def test_a_subdomain_pattern_beats_its_parent(work):
    directory(work, TUBE, {**TUBE, "key": "tube-cdn", "operator": "CDN", "domains": ["cdn.tube.example"]})
    with work.sessions() as session:
        assert hosts.resolve_host(session, "https://x.cdn.tube.example/a").key == "tube-cdn"
        assert hosts.resolve_host(session, "https://www.tube.example/a").key == "tube"
        assert hosts.resolve_host(session, "https://nottube.example/a").key == "unknown:nottube.example"


# -- notices --------------------------------------------------------------------------------------
def test_a_notice_lists_urls_and_evidence_in_english_and_japanese_never_a_name_or_an_image(work):
    open_case(work, "c1", "anna")
    directory(work)
    one = manual(work, platform="tube", media_url="https://cdn.tube.example/1.jpg", media_phash="f0e1d2c3b4a59687",
                 found_at=dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC))
    two = manual(work, page="https://tube.example/watch/2", sha="cd" * 32)
    draft = notices.preview_notice(work, ANNA, [one.id, two.id], now=T0)
    assert (draft.recipient, draft.channel, draft.language, draft.verified) == ("abuse@tube.example", "email", "en",
                                                                                True)
    assert draft.subject.startswith("Removal request: intimate images published without consent (2 URLs)")
    for needed in ("https://tube.example/watch/1", "https://cdn.tube.example/1.jpg", "https://tube.example/watch/2",
                   SHA, "cd" * 32, "pHash: f0e1d2c3b4a59687", "found: 2026-11-01 08:00 UTC (tube)",
                   "did not consent", "authorised us in writing", "Helping Hands", "Art. 16 Digital Services Act",
                   "takedowns@helping.example", "We do not attach the images"):
        assert needed in draft.body, needed
    assert "Secret Name" not in draft.body + draft.subject and "c1" not in draft.body.split()
    japanese = notices.preview_notice(work, ANNA, [one.id, two.id], language="ja", now=T0)
    assert japanese.subject.startswith("削除依頼") and "御中" in japanese.body and "同意していない" in japanese.body
    assert "書面で委任" in japanese.body and SHA in japanese.body and "Secret Name" not in japanese.body
    assert not _audit(work, "notice_eml") and len(_audit(work, "notice_preview")) == 2
    with work.sessions() as session:  # a preview stores nothing
        assert not list(session.scalars(select(Notice)))
    with pytest.raises(InvalidInput, match="written in"):
        notices.preview_notice(work, ANNA, [one.id], language="fr", now=T0)


def test_the_eml_is_stored_as_sent_and_moves_its_takedowns_to_sent(work):
    open_case(work, "c1", "anna")
    directory(work)
    one = manual(work)
    view, raw = notices.download_eml(work, ANNA, [one.id], now=T0)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["To"] == "abuse@tube.example" and "Helping Hands" in message["From"]
    assert message["Message-ID"] == view.message_id and not message.is_multipart()
    assert message.get_content_type() == "text/plain" and "https://tube.example/watch/1" in message.get_content()
    assert b"\r\n" in raw  # an .eml is CRLF
    assert (view.method, view.body, view.takedown_ids) == ("eml", message.get_content().replace("\r\n", "\n"),
                                                           [one.id])
    after = takedowns.get_takedown(work, ANNA, one.id)
    assert after.takedown.state == "sent" and after.takedown.first_sent_at == T0
    assert after.takedown.next_escalation_at == T0 + dt.timedelta(days=3)  # the host answers within 3 days
    assert after.transitions[-1].notice_id == view.id and after.notices[0].id == view.id
    with pytest.raises(Conflict, match="first notice"):  # sent already: the next is an escalation step
        notices.download_eml(work, ANNA, [one.id], now=T0)


def test_a_notice_needs_the_clients_consent_for_takedown_one_host_and_a_verified_contact_to_send(work):
    open_case(work, "c1", "anna", consent=False)
    open_case(work, "c2", "anna")
    directory(work, TUBE, {**TUBE, "key": "pics", "domains": ["pics.example"], "verified": False})
    no_consent = manual(work, "c1")
    with pytest.raises(ConsentMissing):
        notices.record_web_form(work, ANNA, [no_consent.id], now=T0)
    assert "no_takedown_consent:c1" in notices.preview_notice(work, ANNA, [no_consent.id], now=T0).warnings
    tube, pics = manual(work, "c2"), manual(work, "c2", page="https://pics.example/1")
    with pytest.raises(InvalidInput, match="one host"):
        notices.preview_notice(work, ANNA, [tube.id, pics.id], now=T0)
    work.settings.takedowns.smtp.host = "127.0.0.1"
    with pytest.raises(Conflict, match="not verified"):
        notices.send_notice(work, ANNA, [pics.id], now=T0)
    work.settings.takedowns.smtp.host = None
    with pytest.raises(Conflict, match=r"smtp\.host"):
        notices.send_notice(work, ANNA, [tube.id], now=T0)
    assert takedowns.get_takedown(work, ANNA, tube.id).takedown.state == "draft"


def test_plain_smtp_is_refused_unless_loopback_and_allowed(work):
    config = work.settings.takedowns.smtp.model_copy(update={"host": "mail.example", "security": "none",
                                                             "allow_plain_loopback": True})
    with pytest.raises(Misconfigured, match="plain SMTP"):
        notices.deliver(config, email.message.EmailMessage())
    with pytest.raises(Misconfigured, match="plain SMTP"):
        notices.deliver(config.model_copy(update={"host": "127.0.0.1", "allow_plain_loopback": False}),
                        email.message.EmailMessage())


def test_a_notice_of_several_cases_names_none_and_a_reviewer_sees_only_her_cases_urls(work):
    open_case(work, "c1", "anna")
    open_case(work, "c2", "ben")
    directory(work)
    mine, theirs = manual(work, "c1"), manual(work, "c2", page="https://tube.example/watch/99")
    view, _ = notices.download_eml(work, ADMIN, [mine.id, theirs.id], now=T0)
    assert "c1" not in view.body.split() and "c2" not in view.body.split() and "Secret Name" not in view.body
    with pytest.raises(Forbidden):
        notices.preview_notice(work, ANNA, [mine.id, theirs.id], now=T0)
    seen = notices.list_notices(work, ANNA)
    assert [(n.id, n.takedown_ids, n.body) for n in seen] == [(view.id, [mine.id], None)]  # no text of c2's URL
    assert notices.list_notices(work, ADMIN)[0].body == view.body


# -- escalation -----------------------------------------------------------------------------------
def test_escalation_comes_due_after_the_hosts_response_time_and_walks_its_ladder(work):
    open_case(work, "c1", "anna")
    directory(work)
    one = manual(work)
    notices.download_eml(work, ANNA, [one.id], now=T0)
    assert takedowns.due(work, ANNA, now=T0 + dt.timedelta(days=2)) == []
    today = takedowns.due(work, ANNA, now=T0 + dt.timedelta(days=3, hours=5))
    assert [(d.takedown.id, d.overdue, d.next_step.kind, d.next_step_index) for d in today] == [
        (one.id, False, "resend", 0)]
    late = takedowns.due(work, ANNA, now=T0 + dt.timedelta(days=6))
    assert late[0].overdue and late[0].days_overdue == 3
    # Step 0 (resend) as a notice to the host: no response, then escalated.
    resend = notices.preview_notice(work, ANNA, [one.id], step=0, now=T0 + dt.timedelta(days=6))
    assert resend.subject.startswith("Reminder") and "2026-11-02 09:00 UTC" in resend.body
    notices.record_web_form(work, ANNA, [one.id], step=0, now=T0 + dt.timedelta(days=6))
    after = takedowns.get_takedown(work, ANNA, one.id).takedown
    assert (after.state, after.escalation_step) == ("escalated", 1)
    assert after.next_escalation_at == T0 + dt.timedelta(days=8)  # the resend waits its own 2 days
    assert states(work, one.id)[-2:] == [("sent", "no_response"), ("no_response", "escalated")]
    # Step 1: the upstream provider, by e-mail, named in the notice.
    upstream = notices.preview_notice(work, ANNA, [one.id], step=1, now=T0 + dt.timedelta(days=8))
    assert upstream.recipient == "abuse@hoster.example" and "To Hoster BV" in upstream.body
    assert "Tube Ltd" in upstream.body
    notices.download_eml(work, ANNA, [one.id], step=1, now=T0 + dt.timedelta(days=8))
    # Step 2 recorded outside mimamori (the regulator's form), then nothing is left.
    takedowns.escalate(work, ANNA, [one.id], note="reported on the form", now=T0 + dt.timedelta(days=13))
    last = takedowns.due(work, ANNA, now=T0 + dt.timedelta(days=30))
    assert last[0].next_step is None and last[0].overdue
    with pytest.raises(Conflict, match="every step"):
        takedowns.escalate(work, ANNA, [one.id], now=T0 + dt.timedelta(days=30))
    assert [s for s in states(work, one.id)].count(("no_response", "escalated")) == 3


def test_a_refusal_makes_the_next_step_due_at_once_and_unknown_hosts_have_no_ladder(work):
    open_case(work, "c1")
    directory(work)
    one = manual(work)
    notices.record_web_form(work, ADMIN, [one.id], now=T0)
    takedowns.transition(work, ADMIN, one.id, "refused", note="they ask for a court order", now=T0 + dt.timedelta(1))
    assert [d.takedown.id for d in takedowns.due(work, ADMIN, now=T0 + dt.timedelta(days=1))] == [one.id]
    stranger = manual(work, page="https://nowhere.example/1")
    with pytest.raises(Conflict, match="not in the directory"):
        notices.preview_notice(work, ADMIN, [stranger.id], step=0, now=T0)
    draft = notices.preview_notice(work, ADMIN, [stranger.id], now=T0)
    assert draft.recipient is None and "unknown_host" in draft.warnings and draft.operator == "nowhere.example"


# -- re-checks ------------------------------------------------------------------------------------
def test_rechecks_are_due_by_the_hosts_interval_and_idempotent_by_check_id(work):
    open_case(work, "c1")
    directory(work)
    one = manual(work, media_pdq="0f" * 32)
    stranger = manual(work, page="https://nowhere.example/1")
    due = takedowns.due_rechecks(work, now=T0)
    assert [(t.takedown_id, t.interval_hours) for t in due] == [(one.id, 12), (stranger.id, 24)]
    assert due[0].removal_rules == [{"status": [200], "text": "This video was removed"}]
    assert due[0].media_pdq == "0f" * 32 and due[0].media_sha256 == SHA
    up = takedowns.record_recheck(work, one.id, "run1-1", "still_up", {"status": 200}, T0 + dt.timedelta(hours=1))
    assert (up.state_after, up.transition_id, up.repeat) == ("draft", None, False)
    assert [t.takedown_id for t in takedowns.due_rechecks(work, now=T0 + dt.timedelta(hours=12))] == [stranger.id]
    gone = takedowns.record_recheck(work, one.id, "run2-1", "gone", {"status": 404}, T0 + dt.timedelta(hours=13))
    assert (gone.state_before, gone.state_after, gone.reappeared) == ("draft", "removed", False)
    repeat = takedowns.record_recheck(work, one.id, "run2-1", "gone", {"status": 404}, T0 + dt.timedelta(hours=13))
    assert repeat.repeat and repeat.transition_id == gone.transition_id and states(work, one.id) == [
        ("draft", "removed")]
    back = takedowns.record_recheck(work, one.id, "run3-1", "still_up", {"status": 200}, T0 + dt.timedelta(days=2))
    assert (back.state_after, back.reappeared) == ("reappeared", True)
    assert takedowns.record_recheck(work, one.id, "run3-1", "still_up", None, T0 + dt.timedelta(days=2)).reappeared \
        is False  # told once
    assert one.id in [t.id for t in takedowns.list_takedowns(work, ADMIN, needs_action=True)]
    detail = takedowns.get_takedown(work, ADMIN, one.id)
    assert [(c.check_id, c.transition_id is not None) for c in detail.checks] == [
        ("run1-1", False), ("run2-1", True), ("run3-1", True)]
    assert detail.transitions[0].check_id == "run2-1" and detail.transitions[0].actor == "rechecks"
    with pytest.raises(Conflict, match="recorded for takedown"):
        takedowns.record_recheck(work, stranger.id, "run1-1", "gone", None, T0)
    with pytest.raises(NotFound):
        takedowns.record_recheck(work, 999, "x", "gone", None, T0)
    with pytest.raises(InvalidInput):
        takedowns.record_recheck(work, one.id, "y", "vanished", None, T0)


def test_a_group_of_rechecks_is_one_transaction_all_or_none(work):
    open_case(work, "c1")
    directory(work)
    one, two = manual(work), manual(work, page="https://nowhere.example/1")
    at = T0 + dt.timedelta(hours=1)
    results = takedowns.record_rechecks(work, [(one.id, "g1-1", "gone", {"status": 404}, at),
                                               (two.id, "g1-2", "still_up", {"status": 200}, at)])
    assert [(r.takedown_id, r.state_after, r.repeat) for r in results] == [(one.id, "removed", False),
                                                                           (two.id, "draft", False)]
    again = takedowns.record_rechecks(work, [(one.id, "g1-1", "gone", {"status": 404}, at)])
    assert again[0].repeat and states(work, one.id) == [("draft", "removed")]  # a replayed group repeats nothing
    with pytest.raises(InvalidInput):  # one bad check: none of the group is recorded
        takedowns.record_rechecks(work, [(two.id, "g2-1", "gone", None, at), (two.id, "g2-2", "vanished", None, at)])
    assert [c.check_id for c in takedowns.get_takedown(work, ADMIN, two.id).checks] == ["g1-2"]


def test_dns_failure_counts_as_gone_only_after_consecutive_checks(work):
    open_case(work, "c1")
    one = manual(work, page="https://nowhere.example/1")
    at = T0
    for n in range(2):
        at += dt.timedelta(days=1)
        assert takedowns.record_recheck(work, one.id, f"d{n}", "dns_failure", None, at).state_after == "draft"
    takedowns.record_recheck(work, one.id, "ok", "changed", None, at + dt.timedelta(hours=1))  # resolved again
    for n in range(2, 4):
        at += dt.timedelta(days=1)
        assert takedowns.record_recheck(work, one.id, f"d{n}", "dns_failure", None, at).state_after == "draft"
    third = takedowns.record_recheck(work, one.id, "d4", "dns_failure", None, at + dt.timedelta(days=1))
    assert third.state_after == "removed"
    evidence = takedowns.get_takedown(work, ADMIN, one.id).transitions[-1].evidence
    assert evidence == {"kind": "recheck", "outcome": "dns_failure", "consecutive_dns_failures": 3}


# -- reports --------------------------------------------------------------------------------------
def _history(work) -> dict[str, int]:
    """Five URLs requested in November on two hosts, one in December; removals, a reappearance."""
    open_case(work, "c1")
    directory(work, TUBE, {**TUBE, "key": "pics", "domains": ["pics.example"], "country": "US"})
    ids = {}
    for name, page in (("a", "https://tube.example/a"), ("b", "https://tube.example/b"),
                       ("c", "https://tube.example/c"), ("d", "https://pics.example/d"),
                       ("e", "https://pics.example/e"), ("f", "https://tube.example/f")):
        ids[name] = manual(work, page=page, platform="tube" if "tube" in page else "pics").id
    day = dt.timedelta(days=1)
    notices.record_web_form(work, ADMIN, [ids["a"], ids["b"], ids["c"]], now=T0)
    notices.record_web_form(work, ADMIN, [ids["d"], ids["e"]], now=T0)
    notices.record_web_form(work, ADMIN, [ids["f"]], now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    takedowns.record_recheck(work, ids["a"], "a1", "gone", None, T0 + 2 * day)  # 2 days
    takedowns.record_recheck(work, ids["b"], "b1", "gone", None, T0 + 10 * day)  # 10 days
    takedowns.record_recheck(work, ids["b"], "b2", "still_up", None, T0 + 12 * day)  # back
    takedowns.transition(work, ADMIN, ids["d"], "removed", note="gone, seen by staff", now=T0 + 4 * day)
    takedowns.transition(work, ADMIN, ids["e"], "closed", note="not the client after all", now=T0 + 3 * day)
    return ids


def test_reports_count_requests_removals_times_and_reappearances(work):
    _history(work)
    now = dt.datetime(2026, 12, 10, tzinfo=dt.UTC)
    by_host = {(r.month, r.group): r for r in takedowns.report(work, ADMIN, by="host", now=now)}
    tube = by_host[("2026-11", "tube")]
    assert (tube.requested, tube.removed, tube.removal_rate, tube.median_days_to_removal) == (3, 2, 0.6667, 6.0)
    assert tube.still_up_7d == round(2 / 3, 4)  # a gone on day 2; b, c still up on day 7
    assert tube.still_up_30d == round(2 / 3, 4)  # b came back on day 12; c never went
    assert tube.reappeared == 1
    pics = by_host[("2026-11", "pics")]
    assert (pics.requested, pics.removed, pics.median_days_to_removal, pics.still_up_7d) == (2, 1, 4.0, 0.0)
    december = by_host[("2026-12", "tube")]
    assert (december.requested, december.still_up_7d, december.still_up_30d) == (1, 1.0, None)  # 9 days old
    month = takedowns.report(work, ADMIN, by="month", now=now)
    assert [(r.month, r.group, r.requested, r.removed) for r in month] == [("2026-11", "", 5, 3),
                                                                          ("2026-12", "", 1, 0)]
    country = {(r.month, r.group): r.requested for r in takedowns.report(work, ADMIN, by="country", now=now)}
    assert country == {("2026-11", "NL"): 3, ("2026-11", "US"): 2, ("2026-12", "NL"): 1}
    assert [r.month for r in takedowns.report(work, ADMIN, by="month", since=dt.date(2026, 12, 1), now=now)] == [
        "2026-12"]
    csv = takedowns.report_csv(takedowns.report(work, ADMIN, by="platform", now=now))
    lines = csv.splitlines()
    assert lines[0] == ",".join(takedowns.REPORT_COLUMNS) and lines[1].startswith("2026-11,pics,2,1,0.5,4.0")


# -- withdrawal -----------------------------------------------------------------------------------
def test_withdrawal_closes_the_takedowns_and_keeps_only_what_the_reports_count(work):
    ids = _history(work)
    open_case(work, "c2")
    other = manual(work, "c2", page="https://tube.example/other")
    shared, _ = notices.download_eml(work, ADMIN, [other.id], now=T0)
    now = dt.datetime(2026, 12, 10, tzinfo=dt.UTC)
    before = takedowns.report(work, ADMIN, by="host", now=now)
    report = cases.withdraw(work, ADMIN, "c1")
    assert report.takedowns == 6
    with work.sessions() as session:
        rows = list(session.scalars(select(Takedown).where(Takedown.id.in_(ids.values()))))
        assert {t.state for t in rows} == {"closed"} and all(t.withdrawn_at for t in rows)
        assert all(t.page_url is None and t.media_sha256 is None and t.case_id is None and t.match_id is None
                   for t in rows)
        assert {t.host_key for t in rows} == {"tube", "pics"}
        notes = session.scalars(select(TakedownTransition.note).where(
            TakedownTransition.takedown_id.in_(ids.values()))).all()
        assert set(notes) == {None}
        assert all(c.detail is None for c in session.scalars(select(TakedownCheck)))
        bodies = {n.id: n.body for n in session.scalars(select(Notice))}
        assert bodies[shared.id] is not None and sum(b is None for b in bodies.values()) == 3
        assert "Secret Name" not in "".join(str(r.details) for r in session.scalars(select(AuditEvent)))
    after = takedowns.report(work, ADMIN, by="host", now=now)
    # The counts stay; the share still up is now unknown for URLs closed before 30 days passed.
    assert [(r.month, r.group, r.requested, r.removed, r.median_days_to_removal, r.reappeared) for r in after] == \
        [(r.month, r.group, r.requested, r.removed, r.median_days_to_removal, r.reappeared) for r in before]
    with pytest.raises(Conflict, match="withdrawn"):
        takedowns.transition(work, ADMIN, ids["a"], "draft", now=now)
    assert takedowns.due_rechecks(work, now=now + dt.timedelta(days=5)) == [
        t for t in takedowns.due_rechecks(work, now=now + dt.timedelta(days=5)) if t.case_id == "c2"]


# -- the two front doors: the API and the CLI, through the same services ----------------------------
def test_the_api_routes_reach_the_services_with_access_by_case(work):
    from fastapi.testclient import TestClient

    from mimamori.api.app import create_app
    from mimamori.services.auth import create_api_key

    open_case(work, "c1", "k-reviewer")
    open_case(work, "c2")
    keys = {role: create_api_key(work.sessions, f"k-{role}", role) for role in ("admin", "reviewer", "auditor")}
    admin, reviewer, auditor = ({"Authorization": f"Bearer {keys[r]}"} for r in ("admin", "reviewer", "auditor"))
    with TestClient(create_app(work.settings, work), raise_server_exceptions=False) as client:
        imported = client.post("/hosts/import", json={"yaml": yaml.safe_dump({"hosts": [TUBE]})}, headers=admin)
        assert imported.status_code == 200 and imported.json()["created"] == 1
        assert client.post("/hosts/import", json={"yaml": "[]"}, headers=reviewer).status_code == 403
        made = client.post("/takedowns", json={"case_id": "c1", "page_url": "https://tube.example/w/1",
                                               "media_sha256": SHA}, headers=reviewer)
        assert made.status_code == 201, made.text
        takedown_id = made.json()["id"]
        assert client.post("/takedowns", json={"case_id": "c2", "page_url": "https://tube.example/w/2"},
                           headers=reviewer).json()["error"] == "not_assigned"
        other = client.post("/takedowns", json={"case_id": "c2", "page_url": "https://tube.example/w/2"},
                            headers=admin).json()["id"]
        assert [t["id"] for t in client.get("/takedowns", headers=reviewer).json()] == [takedown_id]
        assert client.get(f"/takedowns/{other}", headers=reviewer).status_code == 403
        assert client.get("/takedowns", headers=auditor).status_code == 403
        preview = client.post("/notices/preview", json={"takedown_ids": [takedown_id], "language": "ja"},
                              headers=reviewer)
        assert preview.status_code == 200 and "御中" in preview.json()["body"]
        eml = client.post("/notices/eml", json={"takedown_ids": [takedown_id]}, headers=reviewer)
        assert eml.status_code == 200 and eml.headers["content-type"] == "message/rfc822"
        assert b"https://tube.example/w/1" in eml.content and b"Secret Name" not in eml.content
        detail = client.get(f"/takedowns/{takedown_id}", headers=reviewer).json()
        assert detail["takedown"]["state"] == "sent" and len(detail["notices"]) == 1
        illegal = client.post(f"/takedowns/{takedown_id}/transition", json={"state": "draft"}, headers=reviewer)
        assert illegal.status_code == 409 and illegal.json()["error"] == "illegal_transition"
        removed = client.post(f"/takedowns/{takedown_id}/transition", json={"state": "removed", "note": "gone"},
                              headers=reviewer)
        assert removed.json()["state"] == "removed"
        report = client.get("/takedowns/report.csv?by=host", headers=admin)
        assert report.status_code == 200 and report.text.splitlines()[1].startswith(f"{utc_month()},tube,1,1,1.0")
        assert client.get("/takedowns/due", headers=reviewer).json() == []
        assert "verified" in client.get("/hosts.yaml", headers=reviewer).text


def utc_month() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m")


def test_the_cli_commands_go_through_the_services(tmp_path, capsys):
    from mimamori.cli.main import main
    from mimamori.stores.cases import open_database

    site = tmp_path / "site.yaml"
    database = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
    site.write_text(yaml.safe_dump({"database": {"url": database}, "stack": {"home": str(tmp_path / "stack")}}))
    args = ["--config", str(site)]
    sessions = open_database(database)
    assert main([*args, "cases", "create", "c1", "--name", "Secret Name"]) == 0
    assert main([*args, "takedowns", "hosts", "import", str(EXAMPLE)]) == 0
    assert main([*args, "takedowns", "create", "--case", "c1", "--page-url", "https://forum.example.ca/t/1",
                 "--sha256", SHA]) == 0
    assert main([*args, "takedowns", "create", "--case", "c1", "--page-url", "https://elsewhere.example.org/1"]) == 0
    out = capsys.readouterr().out
    assert "on example-forum-ca" in out and "unknown host, add a contact" in out
    assert main([*args, "takedowns", "notice", "preview", "1"]) == 0
    assert "https://forum.example.ca/t/1" in capsys.readouterr().out
    eml = tmp_path / "notice.eml"
    assert main([*args, "takedowns", "notice", "eml", "1", "--output", str(eml)]) == 2  # no consent on record
    assert "no consent" in capsys.readouterr().err
    with sessions.begin() as session:
        session.add(Consent(case_id="c1", given_by="the client", relationship_to_client="self",
                            given_at=T0, scope=["takedown"], recorded_by="ada"))
    assert main([*args, "takedowns", "notice", "eml", "1", "--output", str(eml)]) == 0
    assert eml.stat().st_mode & 0o777 == 0o600 and b"forum.example.ca" in eml.read_bytes()
    assert main([*args, "takedowns", "transition", "1", "acknowledged", "--note", "ticket 123"]) == 0
    assert main([*args, "takedowns", "transition", "1", "reappeared"]) == 2
    assert main([*args, "takedowns", "list", "--state", "acknowledged"]) == 0
    assert "takedown 1: acknowledged" in capsys.readouterr().out
    assert main([*args, "takedowns", "show", "1", "--json"]) == 0
    assert '"to_state": "acknowledged"' in capsys.readouterr().out
    assert main([*args, "takedowns", "hosts", "unknown"]) == 0
    assert "add a contact  example.org  (1 takedown(s))" in capsys.readouterr().out
    assert main([*args, "takedowns", "due"]) == 0
    assert main([*args, "takedowns", "report", "--csv"]) == 0
    assert capsys.readouterr().out.startswith("nothing due\nmonth,group,requested")
    with sessions() as session:
        actions = {row.action for row in session.scalars(select(AuditEvent)) if row.actor.startswith("cli:")}
    assert {"create_takedown", "notice_preview", "notice_eml", "takedown_transition", "takedown_report"} <= actions


# -- optional GeoIP (a MaxMind file the organisation provides) --------------------------------------
def _mmdb_value(value) -> bytes:
    """One value in the MaxMind DB data format (the types this test needs)."""
    def control(kind: int, size: int) -> bytes:
        assert size < 29
        return bytes([(kind << 5) | size]) if kind < 8 else bytes([size, kind - 7])

    if isinstance(value, str):
        raw = value.encode()
        return control(2, len(raw)) + raw
    if isinstance(value, dict):
        return control(7, len(value)) + b"".join(_mmdb_value(k) + _mmdb_value(v) for k, v in value.items())
    if isinstance(value, list):
        return control(11, len(value)) + b"".join(_mmdb_value(v) for v in value)
    kind, raw = value  # (type, int): 5 uint16, 6 uint32, 9 uint64
    data = raw.to_bytes((raw.bit_length() + 7) // 8, "big")
    return control(kind, len(data)) + data


def write_mmdb(path: Path, prefix: str, country: str) -> None:
    """A GeoIP2-Country-shaped database (IPv4, 24-bit records) where one /24 is in ``country``."""
    import ipaddress

    network = ipaddress.ip_network(prefix)
    bits = f"{int(network.network_address):032b}"[: network.prefixlen]
    nodes = len(bits)
    data = _mmdb_value({"country": {"iso_code": country}})
    tree = b""
    for depth, bit in enumerate(bits):
        nxt = depth + 1 if depth + 1 < nodes else nodes + 16  # the last points at the data's first byte
        records = [nodes, nodes]  # nodes: "no data"
        records[int(bit)] = nxt
        tree += b"".join(r.to_bytes(3, "big") for r in records)
    metadata = _mmdb_value({"node_count": (6, nodes), "record_size": (5, 24), "ip_version": (5, 4),
                            "database_type": "GeoIP2-Country", "languages": ["en"],
                            "binary_format_major_version": (5, 2), "binary_format_minor_version": (5, 0),
                            "build_epoch": (9, 1_700_000_000), "description": {"en": "test"}})
    path.write_bytes(tree + bytes(16) + data + b"\xab\xcd\xefMaxMind.com" + metadata)


def test_the_server_country_of_an_unknown_host_comes_from_the_organisations_geoip_file(work, tmp_path):
    geoip = tmp_path / "country.mmdb"
    write_mmdb(geoip, "192.0.2.0/24", "NL")
    assert hosts.server_country(geoip, "192.0.2.7") == "NL"
    assert hosts.server_country(geoip, "198.51.100.1") is None and hosts.server_country(None, "192.0.2.7") is None
    open_case(work, "c1")
    work.settings.takedowns.geoip_database = geoip
    directory(work)
    found = manual(work, page="http://192.0.2.7/gallery/1")
    assert (found.host_key, found.country) == ("unknown:192.0.2.7", "NL")
    assert manual(work, page="https://tube.example/x").country == "NL"  # the directory's entry says so
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a database")
    with pytest.raises(Misconfigured, match="geoip_database"):
        hosts.server_country(broken, "192.0.2.7")


def test_a_recheck_that_ends_after_its_case_was_withdrawn_keeps_no_url_and_moves_nothing(work):
    open_case(work, "c1")
    directory(work)
    one = manual(work)
    due = takedowns.due_rechecks(work, now=T0)  # the service read the target...
    cases.withdraw(work, ADMIN, "c1")  # ...the case was withdrawn while the page was fetched
    result = takedowns.record_recheck(work, due[0].takedown_id, "late-1", "gone",
                                      {"final_url": "https://tube.example/watch/1"}, T0 + dt.timedelta(hours=1))
    assert (result.state_before, result.state_after, result.transition_id) == ("closed", "closed", None)
    with work.sessions() as session:
        check = session.get(TakedownCheck, "late-1")
        assert check.detail is None and session.get(Takedown, one.id).page_url is None


def test_a_host_contact_is_one_mailbox():
    assert hosts.HostEntry(key="h", domains=["h.example"], operator="H", abuse_email="abuse@example.org",
                           channel="email").abuse_email == "abuse@example.org"
    for bad in ("a,b@example.org", "Abuse <abuse@example.org>", "x@example.org;y@example.org"):
        with pytest.raises(ValueError):
            hosts.HostEntry(key="h", domains=["h.example"], operator="H", abuse_email=bad, channel="email")
