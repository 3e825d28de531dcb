"""Takedowns: from a confirmed match to content that is gone, and stays gone.

A takedown is one URL to have removed. Confirming a match creates one per page its media was
seen on, in the confirmation's own transaction (services/matches.py); staff add URLs found
elsewhere by hand. Its state moves through ``stores.takedowns.TRANSITIONS`` (the database
refuses anything else), every move a transition row with actor, time, note and evidence, and an
audit row in the same transaction. Notices (services/notices.py) move drafts to ``sent``; the
re-check service reports what it found (``record_recheck``: gone → removed, found again →
reappeared); the host's escalation ladder says what is due when a host stays silent (``due``,
``escalate``). Reports count requests, removals and reappearances per month and host, platform
or country.

Access is by case (services/access.py): a reviewer sees and acts on the takedowns of their
cases only. Every function that depends on the time takes ``now`` (default: the clock), so
tests and the re-check service can move it.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mimamori.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from mimamori.core.spreadsheet import rows_csv
from mimamori.services import matches
from mimamori.services.access import require_case_access, visible_case_ids
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.hosts import (
    UNKNOWN_PREFIX,
    EscalationStep,
    HostDirectory,
    HostEntry,
    hostname_of,
    of_visible_cases,
    require_takedown_role,
    server_country,
)
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import Match, get_case, insert_new, utcnow
from mimamori.stores.takedowns import (
    CHECK_OUTCOMES,
    NEEDS_ACTION,
    OPEN_STATES,
    RECHECKED_STATES,
    STATES,
    TRANSITIONS,
    Notice,
    NoticeItem,
    Takedown,
    TakedownCheck,
    TakedownTransition,
    allowed,
)

__all__ = ["CHECK_OUTCOMES", "NEEDS_ACTION", "OPEN_STATES", "RECHECKED_STATES", "STATES"]

RECHECK_ACTOR = Actor("rechecks", "service")
URL_MAX_CHARS = 2048
HEX64 = r"^[0-9a-f]{64}$"  # a SHA-256, a PDQ hash
ReportBy = Literal["month", "host", "platform", "country"]


# -- views ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TakedownView:
    id: int
    case_id: str | None
    match_id: int | None
    page_url: str | None
    media_url: str | None
    media_sha256: str | None
    media_phash: str | None
    media_pdq: str | None
    host_key: str
    host_known: bool
    registrable_domain: str | None
    platform: str | None
    country: str | None
    state: str
    escalation_step: int
    found_at: dt.datetime | None
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    next_check_at: dt.datetime | None
    next_escalation_at: dt.datetime | None
    first_sent_at: dt.datetime | None
    removed_at: dt.datetime | None
    consecutive_dns_failures: int
    needs_action: bool

    @classmethod
    def of(cls, t: Takedown) -> TakedownView:
        return cls(t.id, t.case_id, t.match_id, t.page_url, t.media_url, t.media_sha256 or None, t.media_phash,
                   t.media_pdq, t.host_key, not t.host_key.startswith(UNKNOWN_PREFIX), t.registrable_domain,
                   t.platform, t.country, t.state, t.escalation_step, t.found_at, t.created_at, t.created_by,
                   t.updated_at, t.next_check_at, t.next_escalation_at, t.first_sent_at, t.removed_at,
                   t.dns_failures, t.state in NEEDS_ACTION)


@dataclass(frozen=True)
class TransitionView:
    id: int
    takedown_id: int
    from_state: str
    to_state: str
    actor: str
    role: str
    at: dt.datetime
    note: str | None
    evidence: dict[str, Any] | None
    check_id: str | None
    notice_id: int | None

    @classmethod
    def of(cls, t: TakedownTransition) -> TransitionView:
        return cls(t.id, t.takedown_id, t.from_state, t.to_state, t.actor, t.role, t.at, t.note, t.evidence,
                   t.check_id, t.notice_id)


@dataclass(frozen=True)
class CheckView:
    check_id: str
    takedown_id: int
    outcome: str
    detail: dict[str, Any] | None
    checked_at: dt.datetime
    transition_id: int | None


@dataclass(frozen=True)
class NoticeView:
    id: int
    host_key: str
    recipient: str | None
    channel: str
    method: str
    language: str
    subject: str | None  # None: redacted (withdrawal), or it lists URLs of cases the reader may not see
    body: str | None
    takedown_ids: list[int]  # the ones the reader may see
    step: int | None
    sent_at: dt.datetime
    sent_by: str
    message_id: str | None
    redacted: bool


@dataclass(frozen=True)
class TakedownDetail:
    takedown: TakedownView
    transitions: list[TransitionView]
    checks: list[CheckView]
    notices: list[NoticeView]


@dataclass(frozen=True)
class DueItem:
    takedown: TakedownView
    due_at: dt.datetime
    overdue: bool  # due before today (UTC): not just "due today"
    days_overdue: int
    next_step: EscalationStep | None  # None: the ladder is exhausted, or the host is unknown
    next_step_index: int | None


@dataclass(frozen=True)
class RecheckTarget:
    takedown_id: int
    page_url: str
    media_url: str | None
    media_sha256: str | None
    media_phash: str | None
    media_pdq: str | None
    host_key: str
    state: str
    interval_hours: int
    removal_rules: list[dict[str, Any]]
    case_id: str | None
    # When this check came due (the takedown's next_check_at): the check id is made of it, so two
    # re-check services, or one restarted, record one check per due slot.
    due_at: dt.datetime | None = None


@dataclass(frozen=True)
class RecheckResult:
    check_id: str
    takedown_id: int
    outcome: str
    state_before: str
    state_after: str
    transition_id: int | None
    reappeared: bool
    repeat: bool


@dataclass(frozen=True)
class ReportRow:
    month: str
    group: str
    requested: int
    removed: int
    removal_rate: float | None
    median_days_to_removal: float | None
    still_up_7d: float | None
    still_up_30d: float | None
    reappeared: int


REPORT_COLUMNS = ("month", "group", "requested", "removed", "removal_rate", "median_days_to_removal",
                  "still_up_7d", "still_up_30d", "reappeared")


# -- shared checks ---------------------------------------------------------------------------------
def aware_time(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise InvalidInput("naive_time", "give the time with a time zone")
    try:
        return now.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise InvalidInput("bad_time", f"{now.isoformat()} is not a time mimamori can keep (in UTC)") from None


def require_takedown_access(session: Session, actor: Actor, takedowns: Iterable[Takedown]) -> None:
    """Every takedown of a case the actor may see; a withdrawn case's (no case) only for admins."""
    require_takedown_role(actor)
    visible = visible_case_ids(session, actor)
    if visible is None:
        return
    for takedown in takedowns:
        if takedown.case_id not in visible:
            raise Forbidden("not_assigned", f"takedown {takedown.id} is of a case not assigned to you; "
                                            "an admin assigns cases")


def load_takedowns(session: Session, actor: Actor, ids: Iterable[int], *, lock: bool = False) -> list[Takedown]:
    """The takedowns of these ids in that order, each one the actor's to see (else the refusal).

    ``lock``: first a write on the rows (the database's write lock on SQLite, the rows' locks on
    PostgreSQL), so two staff acting on one takedown at once are serialised, not interleaved.
    """
    wanted = list(dict.fromkeys(int(i) for i in ids))
    if not wanted:
        raise InvalidInput("no_takedowns", "name at least one takedown")
    if lock:
        session.execute(update(Takedown).where(Takedown.id.in_(wanted)).values(dns_failures=Takedown.dns_failures)
                        .execution_options(synchronize_session=False))
        session.expire_all()
    found = {t.id: t for t in session.scalars(select(Takedown).where(Takedown.id.in_(wanted)))}
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFound("unknown_takedown", f"no takedown {missing[0]}")
    rows = [found[i] for i in wanted]
    require_takedown_access(session, actor, rows)
    return rows


def expected_days(entry: HostEntry | None, work: Workspace) -> int:
    return entry.expected_response_days if entry else work.settings.takedowns.default_expected_response_days


def recheck_hours(entry: HostEntry | None, work: Workspace) -> int:
    if entry is not None and entry.recheck_hours:
        return entry.recheck_hours
    return work.settings.takedowns.default_recheck_hours


def step_days(entry: HostEntry | None, step: EscalationStep | None, work: Workspace) -> int:
    if step is not None and step.after_days:
        return step.after_days
    return expected_days(entry, work)


def next_step(entry: HostEntry | None, taken: int) -> EscalationStep | None:
    if entry is None or taken >= len(entry.escalation):
        return None
    return entry.escalation[taken]


# -- the one way a state changes ------------------------------------------------------------------
def apply_transition(session: Session, work: Workspace, actor: Actor, takedown: Takedown, to_state: str,
                     now: dt.datetime, *, note: str | None = None, evidence: dict[str, Any] | None = None,
                     check_id: str | None = None, notice_id: int | None = None, directory: HostDirectory | None = None,
                     action: str = "takedown_transition") -> TakedownTransition:
    """Record a transition, then move the takedown (the triggers check both), and audit it; one transaction.

    Also keeps the takedown's clocks: the first request and removal, when the next escalation
    step is due, when to re-check.
    """
    if to_state not in STATES:
        raise InvalidInput("unknown_state", f"a takedown is one of {', '.join(STATES)}, not {to_state!r}")
    before = takedown.state
    if not allowed(before, to_state):
        raise Conflict("illegal_transition", f"takedown {takedown.id} is {before}: it cannot become {to_state} "
                                             f"(from {before}: {', '.join(TRANSITIONS.get(before, ())) or 'nothing'})")
    if to_state == "removed" and check_id is None and note is None:
        raise InvalidInput("removal_needs_evidence", "a takedown is removed on evidence: a re-check that found it "
                                                     "gone, or your statement in the note (what you saw, when)")
    if to_state == "draft" and takedown.withdrawn_at is not None:
        raise Conflict("withdrawn", f"takedown {takedown.id} is of a withdrawn case: it stays closed")
    row = TakedownTransition(takedown_id=takedown.id, from_state=before, to_state=to_state, actor=actor.name,
                             role=actor.role, at=now, note=note, evidence=evidence, check_id=check_id,
                             notice_id=notice_id)
    session.add(row)
    session.flush()  # the transition first: the takedown's trigger looks for it
    directory = directory or HostDirectory.load(session)
    entry = directory.entry(takedown.host_key)
    takedown.state, takedown.updated_at = to_state, now
    if to_state == "sent":
        takedown.first_sent_at = takedown.first_sent_at or now
        takedown.next_escalation_at = now + dt.timedelta(days=expected_days(entry, work))
    elif to_state == "escalated":
        step = next_step(entry, takedown.escalation_step)
        takedown.escalation_step += 1
        takedown.next_escalation_at = now + dt.timedelta(days=step_days(entry, step, work))
    elif to_state == "refused":
        takedown.next_escalation_at = now  # the next step is due at once
    elif to_state == "removed":
        takedown.removed_at = takedown.removed_at or now
        takedown.next_escalation_at = None
        takedown.dns_failures = 0
    elif to_state == "reappeared":
        takedown.next_escalation_at = None  # back in the queue: a new notice, or the next step
    elif to_state == "closed":
        takedown.next_escalation_at = takedown.next_check_at = None
    elif to_state == "draft":
        takedown.next_check_at = now
    session.flush()
    details: dict[str, Any] = {"from": before, "to": to_state}
    for name, value in (("check_id", check_id), ("notice_id", notice_id), ("note", note is not None)):
        if value:
            details[name] = value
    record(work.sessions, actor, action, case_id=takedown.case_id, target=f"takedown:{takedown.id}",
           session=session, **details)
    return row


# -- creation ------------------------------------------------------------------------------------
def _new_takedown(session: Session, work: Workspace, actor: Actor, directory: HostDirectory, *, case_id: str,
                  page_url: str, media_url: str | None, media_sha256: str, media_phash: str | None,
                  media_pdq: str | None, platform: str | None, match_id: int | None, found_at: dt.datetime | None,
                  now: dt.datetime) -> tuple[Takedown, bool]:
    """The takedown of (case, page, media): created (True) or the one already there (False)."""
    found = directory.resolve(page_url)
    country = found.entry.country if found.entry else server_country(work.settings.takedowns.geoip_database,
                                                                       found.hostname)
    new_id = insert_new(session, Takedown, {
        "case_id": case_id, "match_id": match_id, "page_url": page_url, "media_url": media_url,
        "media_sha256": media_sha256, "media_phash": media_phash, "media_pdq": media_pdq, "host_key": found.key,
        "registrable_domain": found.registrable_domain, "platform": platform, "country": country, "state": "draft",
        "escalation_step": 0, "dns_failures": 0, "found_at": found_at or now, "created_at": now,
        "created_by": actor.name, "updated_at": now, "next_check_at": now}, ["case_id", "page_url", "media_sha256"])
    if new_id is not None:
        return session.get(Takedown, new_id), True
    existing = session.scalars(select(Takedown).where(Takedown.case_id == case_id, Takedown.page_url == page_url,
                                                      Takedown.media_sha256 == media_sha256)).one()
    return existing, False


def _web_url(url: str | None) -> str | None:
    """An http(s) URL of a sighting, or None (a local file ingested by path has no host to ask)."""
    if not url or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):  # no spaces or controls (notices, headers)
        return None
    try:
        hostname_of(url)
    except InvalidInput:
        return None
    return url if len(url) <= URL_MAX_CHARS else None


def confirmation_sightings(work: Workspace, match_ids: list[int]) -> dict[int, list[Any]]:
    """Where the media of these matches were seen (the face store's sightings), by match id.

    Read before the confirmation's transaction (a store outside the database): the takedowns
    are then created inside it.
    """
    with work.sessions() as session:
        rows = session.execute(select(Match.id, Match.media_sha256, Match.model_version)
                               .where(Match.id.in_(match_ids))).all()
    by_version: dict[str | None, set[str]] = defaultdict(set)
    for _, sha, version in rows:
        by_version[version].add(sha)
    seen: dict[str, list[Any]] = {}
    for version, shas in by_version.items():
        for sha, sightings in work.searcher_of_version(version).sightings_of(shas).items():
            seen.setdefault(sha, []).extend(sightings)
    return {match_id: seen.get(sha, []) for match_id, sha, _ in rows}


def _parse_time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def create_for_match(session: Session, work: Workspace, actor: Actor, match: Match, sightings: list[Any],
                     now: dt.datetime) -> list[Takedown]:
    """One takedown per web page the confirmed match's media was seen on (in the caller's transaction).

    A takedown that exists is kept as it is; one closed because the match was un-confirmed is
    opened again.
    """
    directory = HostDirectory.load(session)
    made = []
    for sighting in sightings:
        media_url = _web_url(getattr(sighting, "source_url", None))
        page_url = _web_url(getattr(sighting, "page_url", None)) or media_url
        if page_url is None:
            continue
        takedown, created = _new_takedown(
            session, work, actor, directory, case_id=match.case_id, page_url=page_url, media_url=media_url,
            media_sha256=match.media_sha256, media_phash=match.media_phash, media_pdq=getattr(match, "media_pdq", None),
            platform=getattr(sighting, "platform", None) or None, match_id=match.id,
            found_at=_parse_time(getattr(sighting, "scraped_at", None)) or match.scraped_at or match.created_at,
            now=now)
        if created:
            record(work.sessions, actor, "create_takedown", case_id=match.case_id, target=f"takedown:{takedown.id}",
                   match_id=match.id, host=takedown.host_key, session=session)
        elif takedown.state == "closed" and takedown.withdrawn_at is None:
            apply_transition(session, work, actor, takedown, "draft", now, note="the match was confirmed again",
                             directory=directory)
        made.append(takedown)
    return made


def close_for_undecided_match(session: Session, work: Workspace, actor: Actor, match: Match, decision: str,
                              now: dt.datetime) -> int:
    """A confirmation taken back: the match's takedowns still in draft (nothing sent) are closed."""
    drafts = list(session.scalars(select(Takedown).where(Takedown.match_id == match.id, Takedown.state == "draft")))
    for takedown in drafts:
        apply_transition(session, work, actor, takedown, "closed", now, note=f"the match is now {decision}")
    return len(drafts)


def on_decision(work: Workspace, actor: Actor, decision: str, sightings: dict[int, list[Any]]
                ) -> Callable[[Session, list[Match], dt.datetime], None]:
    """What a review decision does to takedowns, in its transaction (services/matches.py calls it with
    the changed matches as they were): confirmed creates them; a confirmation taken back closes drafts."""

    def apply(session: Session, changed: list[Match], now: dt.datetime) -> None:
        for match in changed:
            if decision == "confirmed":
                create_for_match(session, work, actor, match, sightings.get(match.id, []), now)
            elif match.status == "confirmed":
                close_for_undecided_match(session, work, actor, match, decision, now)

    return apply


def create_takedown(work: Workspace, actor: Actor, case_id: str, page_url: str, *, media_url: str | None = None,
                    media_sha256: str | None = None, media_phash: str | None = None, media_pdq: str | None = None,
                    platform: str | None = None, match_id: int | None = None, found_at: dt.datetime | None = None,
                    note: str | None = None, now: dt.datetime | None = None) -> TakedownView:
    """A takedown for a URL staff found (idempotent: the same case, page and media give the one record)."""
    now = aware_time(now)
    with refusals_audited(work.sessions, actor, "create_takedown", case_id=case_id):
        require_takedown_role(actor)
        for name, url in (("page_url", page_url), ("media_url", media_url)):
            if url is not None and _web_url(url) is None:  # None too for a URL over URL_MAX_CHARS
                raise InvalidInput("bad_url", f"{name}: an http(s) URL of at most {URL_MAX_CHARS} characters")
        if media_sha256 is not None and not re.match(HEX64, media_sha256):
            raise InvalidInput("bad_sha256", "media_sha256: 64 lower-case hex digits")
        if media_phash is not None and not re.match(r"^[0-9a-f]{16}$", media_phash):
            raise InvalidInput("bad_phash", "media_phash: 16 lower-case hex digits")
        if media_pdq is not None and not re.match(HEX64, media_pdq):
            raise InvalidInput("bad_pdq", "media_pdq: 64 lower-case hex digits")
        note = matches.clean_note(note)
        with work.sessions.begin() as session:
            require_takedown_access_to_case(session, actor, case_id)
            get_case(session, case_id)
            if match_id is not None:
                match = session.get(Match, match_id)
                if match is None or match.case_id != case_id:
                    raise NotFound("unknown_match", f"no match {match_id} of case {case_id}")
            takedown, created = _new_takedown(
                session, work, actor, HostDirectory.load(session), case_id=case_id, page_url=page_url.strip(),
                media_url=media_url, media_sha256=media_sha256 or "", media_phash=media_phash, media_pdq=media_pdq,
                platform=platform, match_id=match_id, found_at=aware_time(found_at) if found_at else None, now=now)
            record(work.sessions, actor, "create_takedown", case_id=case_id, target=f"takedown:{takedown.id}",
                   manual=True, repeat=not created, note=note is not None, host=takedown.host_key, session=session)
            return TakedownView.of(takedown)


def require_takedown_access_to_case(session: Session, actor: Actor, case_id: str) -> None:
    require_takedown_role(actor)
    require_case_access(session, actor, case_id)


# -- reading --------------------------------------------------------------------------------------
def list_takedowns(work: Workspace, actor: Actor, *, case_id: str | None = None, state: str | None = None,
                   host_key: str | None = None, needs_action: bool = False, limit: int = 100,
                   offset: int = 0) -> list[TakedownView]:
    """Newest first, of the actor's cases; ``needs_action``: drafts, reappeared, refused, no response."""
    query = select(Takedown).order_by(Takedown.id.desc())
    with refusals_audited(work.sessions, actor, "view_takedowns", case_id=case_id), work.sessions() as session:
        require_takedown_role(actor)
        if state is not None and state not in STATES:
            raise InvalidInput("unknown_state", f"a takedown is one of {', '.join(STATES)}, not {state!r}")
        if case_id is not None:
            require_takedown_access_to_case(session, actor, case_id)
            query = query.where(Takedown.case_id == case_id)
        query = of_visible_cases(session, actor, query)
        if state is not None:
            query = query.where(Takedown.state == state)
        if host_key is not None:
            query = query.where(Takedown.host_key == host_key)
        if needs_action:
            query = query.where(Takedown.state.in_(NEEDS_ACTION))
        rows = [TakedownView.of(t) for t in session.scalars(query.limit(limit).offset(offset))]
    record(work.sessions, actor, "view_takedowns", case_id=case_id, result_count=len(rows),
           **{k: v for k, v in (("state", state), ("host", host_key)) if v})
    return rows


def notice_view(session: Session, notice: Notice, visible: set[str] | None) -> NoticeView:
    """A notice as the reader may see it: its text only when every URL in it is of the reader's cases."""
    items = list(session.execute(select(NoticeItem.takedown_id, Takedown.case_id).join(
        Takedown, Takedown.id == NoticeItem.takedown_id).where(NoticeItem.notice_id == notice.id)
        .order_by(NoticeItem.takedown_id)))
    mine = [tid for tid, case in items if visible is None or case in visible]
    whole = len(mine) == len(items)
    return NoticeView(notice.id, notice.host_key, notice.recipient, notice.channel, notice.method, notice.language,
                      notice.subject if whole else None, notice.body if whole else None, mine, notice.step,
                      notice.sent_at, notice.sent_by, notice.message_id, notice.redacted_at is not None)


def get_takedown(work: Workspace, actor: Actor, takedown_id: int) -> TakedownDetail:
    """One takedown with its transitions, re-checks and notices (audited as a view)."""
    with refusals_audited(work.sessions, actor, "view_takedown", target=f"takedown:{takedown_id}"), \
            work.sessions() as session:
        takedown = load_takedowns(session, actor, [takedown_id])[0]
        transitions = list(session.scalars(select(TakedownTransition).where(
            TakedownTransition.takedown_id == takedown_id).order_by(TakedownTransition.id)))
        by_check = {t.check_id: t.id for t in transitions if t.check_id}
        checks = [CheckView(c.id, c.takedown_id, c.outcome, c.detail, c.checked_at, by_check.get(c.id))
                  for c in session.scalars(select(TakedownCheck).where(TakedownCheck.takedown_id == takedown_id)
                                           .order_by(TakedownCheck.checked_at, TakedownCheck.id))]
        visible = visible_case_ids(session, actor)
        notices = [notice_view(session, n, visible) for n in session.scalars(
            select(Notice).join(NoticeItem, NoticeItem.notice_id == Notice.id)
            .where(NoticeItem.takedown_id == takedown_id).order_by(Notice.id))]
        detail = TakedownDetail(TakedownView.of(takedown), [TransitionView.of(t) for t in transitions], checks,
                                notices)
    record(work.sessions, actor, "view_takedown", case_id=detail.takedown.case_id, target=f"takedown:{takedown_id}")
    return detail


# -- staff transitions and escalation -------------------------------------------------------------
def transition(work: Workspace, actor: Actor, takedown_id: int, to_state: str, *, note: str | None = None,
               evidence: dict[str, Any] | None = None, now: dt.datetime | None = None) -> TakedownView:
    """A staff member's change of state (acknowledged, refused, removed on their statement, closed, ...)."""
    now = aware_time(now)
    with refusals_audited(work.sessions, actor, "takedown_transition", target=f"takedown:{takedown_id}",
                          to=to_state):
        note = matches.clean_note(note)
        if evidence is not None and not isinstance(evidence, dict):
            raise InvalidInput("bad_evidence", "evidence is a JSON object")
        if to_state == "removed":  # the statement is the evidence: kept as such
            evidence = {"kind": "statement", **(evidence or {})}
        with work.sessions.begin() as session:
            takedown = load_takedowns(session, actor, [takedown_id], lock=True)[0]
            apply_transition(session, work, actor, takedown, to_state, now, note=note, evidence=evidence)
            return TakedownView.of(takedown)


def take_step(session: Session, work: Workspace, actor: Actor, takedown: Takedown, now: dt.datetime,
              directory: HostDirectory, *, note: str | None = None, notice_id: int | None = None) -> EscalationStep:
    """Take the takedown's next ladder step: no response first (if it was waiting), then escalated."""
    entry = directory.entry(takedown.host_key)
    if entry is None:
        raise Conflict("unknown_host", f"takedown {takedown.id} is on {takedown.host_key}: add the host and its "
                                       "escalation ladder to the directory first")
    step = next_step(entry, takedown.escalation_step)
    if step is None:
        raise Conflict("ladder_exhausted", f"every step of {entry.key}'s escalation ladder was taken for takedown "
                                           f"{takedown.id}; add a step, or close it")
    if takedown.state in ("sent", "acknowledged", "escalated"):
        apply_transition(session, work, actor, takedown, "no_response", now, directory=directory,
                         note=f"no removal {expected_days(entry, work)} days after the request"
                         if takedown.state != "escalated" else "no removal after the last step",
                         action="escalate")
    if takedown.state not in ("no_response", "refused", "reappeared"):
        raise Conflict("not_escalable", f"takedown {takedown.id} is {takedown.state}: only a request without "
                                        "removal (sent, acknowledged, refused, no response, reappeared) escalates")
    evidence = {"step": takedown.escalation_step, "kind": step.kind, **({"name": step.name} if step.name else {})}
    apply_transition(session, work, actor, takedown, "escalated", now, note=note, evidence=evidence,
                     notice_id=notice_id, directory=directory, action="escalate")
    return step


def escalate(work: Workspace, actor: Actor, takedown_ids: list[int], *, note: str | None = None,
             now: dt.datetime | None = None) -> list[TakedownView]:
    """Record that the next step of each takedown's ladder was taken (outside mimamori: a delisting
    request, a hotline report...), all or none. A step that is a notice: notices.send_notice(step=...)."""
    now = aware_time(now)
    with refusals_audited(work.sessions, actor, "escalate", target=f"takedowns:{len(takedown_ids)}"):
        note = matches.clean_note(note)
        with work.sessions.begin() as session:
            rows = load_takedowns(session, actor, takedown_ids, lock=True)
            directory = HostDirectory.load(session)
            for takedown in rows:
                take_step(session, work, actor, takedown, now, directory, note=note)
            return [TakedownView.of(t) for t in rows]


def _day_start(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def due(work: Workspace, actor: Actor, now: dt.datetime | None = None, limit: int = 500) -> list[DueItem]:
    """What is due today and what is overdue (due before today), oldest first: each takedown's next
    escalation step, by its host's expected response time and ladder."""
    now = aware_time(now)
    today = _day_start(now)
    tomorrow = today + dt.timedelta(days=1)
    with refusals_audited(work.sessions, actor, "view_due"), work.sessions() as session:
        require_takedown_role(actor)
        query = (select(Takedown).where(Takedown.state.in_(OPEN_STATES), Takedown.next_escalation_at.is_not(None),
                                        Takedown.next_escalation_at < tomorrow)
                 .order_by(Takedown.next_escalation_at, Takedown.id).limit(limit))
        query = of_visible_cases(session, actor, query)
        directory = HostDirectory.load(session)
        items = []
        for takedown in session.scalars(query):
            entry = directory.entry(takedown.host_key)
            step = next_step(entry, takedown.escalation_step)
            due_at = takedown.next_escalation_at
            overdue = due_at < today
            items.append(DueItem(TakedownView.of(takedown), due_at, overdue,
                                 (today - _day_start(due_at)).days if overdue else 0, step,
                                 takedown.escalation_step if step is not None else None))
    record(work.sessions, actor, "view_due", result_count=len(items))
    return items


# -- re-checks (the re-check service's side) ------------------------------------------------------
def due_rechecks(work: Workspace, now: dt.datetime | None = None, limit: int = 100) -> list[RecheckTarget]:
    """The URLs whose re-check is due (every state but closed), the longest waiting first."""
    now = aware_time(now)
    with work.sessions() as session:
        directory = HostDirectory.load(session)
        rows = session.scalars(select(Takedown).where(
            Takedown.state.in_(RECHECKED_STATES), Takedown.next_check_at.is_not(None), Takedown.next_check_at <= now,
            Takedown.page_url.is_not(None)).order_by(Takedown.next_check_at, Takedown.id).limit(limit))
        targets = []
        for t in rows:
            entry = directory.entry(t.host_key)
            targets.append(RecheckTarget(
                t.id, t.page_url, t.media_url, t.media_sha256 or None, t.media_phash, t.media_pdq, t.host_key, t.state,
                recheck_hours(entry, work), [r.model_dump(exclude_none=True) for r in entry.removal_rules] if entry
                else [], t.case_id, t.next_check_at))
    return targets


def record_recheck(work: Workspace, takedown_id: int, check_id: str, outcome: str, detail: dict[str, Any] | None,
                   checked_at: dt.datetime, *, actor: Actor = RECHECK_ACTOR) -> RecheckResult:
    """Record what a re-check found and act on it, once per ``check_id`` (a resumed service repeats nothing).

    gone: an open takedown becomes removed, with this check as the evidence. dns_failure: the
    same, once ``takedowns.dns_failures_for_gone`` consecutive checks found no address. still_up:
    a removed URL that is back becomes reappeared (it needs action again). changed, error:
    recorded, no change. The next check is due after the host's interval.
    """
    with work.sessions.begin() as session:
        return _apply_recheck(session, work, actor, None, takedown_id, check_id, outcome, detail, checked_at)


def record_rechecks(work: Workspace, checks: list[tuple[int, str, str, dict[str, Any] | None, dt.datetime]], *,
                    actor: Actor = RECHECK_ACTOR) -> list[RecheckResult]:
    """Several re-checks (takedown id, check id, outcome, detail, checked at) in one transaction: all or none.

    What the re-check service uses: one commit per group instead of per URL."""
    with work.sessions.begin() as session:
        directory = HostDirectory.load(session)
        return [_apply_recheck(session, work, actor, directory, *check) for check in checks]


def _apply_recheck(session: Session, work: Workspace, actor: Actor, directory: HostDirectory | None,
                   takedown_id: int, check_id: str, outcome: str, detail: dict[str, Any] | None,
                   checked_at: dt.datetime) -> RecheckResult:
    if outcome not in CHECK_OUTCOMES:
        raise InvalidInput("unknown_outcome", f"a re-check finds {', '.join(CHECK_OUTCOMES)}, not {outcome!r}")
    if not check_id or len(check_id) > 64:
        raise InvalidInput("bad_check_id", "a check id is 1 to 64 characters")
    checked_at = aware_time(checked_at)
    # The check's row first: its insert takes the write lock (nothing read before it), and a
    # repeat inserts nothing.
    try:
        fresh = insert_new(session, TakedownCheck, {"id": check_id, "takedown_id": takedown_id, "outcome": outcome,
                                                     "detail": detail, "checked_at": checked_at,
                                                     "recorded_at": utcnow()}, ["id"]) is not None
    except IntegrityError:
        raise NotFound("unknown_takedown", f"no takedown {takedown_id}") from None
    if not fresh:
        return _repeat(session, check_id, takedown_id)
    # Locked (PostgreSQL; SQLite's write lock is held already): a staff transition at the same
    # moment waits, so the state this check moves from is the current one.
    takedown = session.scalars(select(Takedown).where(Takedown.id == takedown_id).with_for_update()).one()
    before = takedown.state
    if takedown.withdrawn_at is not None:  # withdrawn while this check ran: keep no URL of the client, act on nothing
        session.execute(update(TakedownCheck).where(TakedownCheck.id == check_id).values(detail=None)
                        .execution_options(synchronize_session=False))
        return RecheckResult(check_id, takedown_id, outcome, before, before, None, False, False)
    directory = directory or HostDirectory.load(session)
    entry = directory.entry(takedown.host_key)
    to_state = None
    if outcome == "dns_failure":
        takedown.dns_failures += 1
        if takedown.dns_failures >= work.settings.takedowns.dns_failures_for_gone and before in OPEN_STATES:
            to_state = "removed"
    elif outcome != "error":
        takedown.dns_failures = 0
        if outcome == "gone" and before in OPEN_STATES:
            to_state = "removed"
        elif outcome == "still_up" and before == "removed":
            to_state = "reappeared"
    if takedown.state != "closed":
        takedown.next_check_at = checked_at + dt.timedelta(hours=recheck_hours(entry, work))
    row = None
    if to_state is not None:
        evidence = {"kind": "recheck", "outcome": outcome}
        if outcome == "dns_failure":
            evidence["consecutive_dns_failures"] = takedown.dns_failures
        row = apply_transition(session, work, actor, takedown, to_state, checked_at, check_id=check_id,
                               evidence=evidence, directory=directory, action="recheck")
    session.flush()
    return RecheckResult(check_id, takedown_id, outcome, before, takedown.state, row.id if row else None,
                         to_state == "reappeared", False)


def _repeat(session: Session, check_id: str, takedown_id: int) -> RecheckResult:
    check = session.get(TakedownCheck, check_id)
    if check.takedown_id != takedown_id:
        raise Conflict("check_id_reused", f"check {check_id} was recorded for takedown {check.takedown_id}")
    row = session.scalars(select(TakedownTransition).where(TakedownTransition.check_id == check_id)).first()
    state = session.get(Takedown, takedown_id).state
    return RecheckResult(check_id, takedown_id, check.outcome, row.from_state if row else state,
                         row.to_state if row else state, row.id if row else None, False, True)


# -- withdrawal -----------------------------------------------------------------------------------
@dataclass
class WithdrawnTakedowns:
    takedowns: int = 0
    closed: int = 0
    notices_redacted: int = 0
    ids: list[int] = field(default_factory=list)


def close_for_withdrawal(session: Session, work: Workspace, actor: Actor, case_id: str,
                         now: dt.datetime | None = None) -> WithdrawnTakedowns:
    """In the withdrawal's transaction: close the case's takedowns and delete what points to the client.

    Kept (for the reports): each takedown's host, platform, country, state and times, and its
    transitions' states, actors and times. Deleted: URLs, media hashes, the case and match
    links, transition notes and evidence, re-check details, and the subject and body of every
    notice that listed one of its URLs (the notice's host, time and a hash of its body stay).
    """
    now = aware_time(now)
    report = WithdrawnTakedowns()
    takedowns = list(session.scalars(select(Takedown).where(Takedown.case_id == case_id)))
    directory = HostDirectory.load(session)
    for takedown in takedowns:
        if takedown.state != "closed":
            apply_transition(session, work, actor, takedown, "closed", now, note="the case was withdrawn",
                             directory=directory, action="withdraw_takedown")
            report.closed += 1
    ids = [t.id for t in takedowns]
    report.takedowns, report.ids = len(ids), ids
    if not ids:
        return report
    session.flush()
    session.execute(update(TakedownTransition).where(TakedownTransition.takedown_id.in_(ids))
                    .values(note=None, evidence=None).execution_options(synchronize_session=False))
    session.execute(update(TakedownCheck).where(TakedownCheck.takedown_id.in_(ids)).values(detail=None)
                    .execution_options(synchronize_session=False))
    notice_ids = sorted(set(session.scalars(select(NoticeItem.notice_id).where(NoticeItem.takedown_id.in_(ids)))))
    if notice_ids:
        report.notices_redacted = session.execute(
            update(Notice).where(Notice.id.in_(notice_ids), Notice.redacted_at.is_(None))
            .values(subject=None, body=None, redacted_at=now).execution_options(synchronize_session=False)).rowcount
    session.execute(update(Takedown).where(Takedown.id.in_(ids)).values(
        case_id=None, match_id=None, page_url=None, media_url=None, media_sha256=None, media_phash=None,
        media_pdq=None, registrable_domain=None, next_check_at=None, next_escalation_at=None, withdrawn_at=now,
        updated_at=now).execution_options(synchronize_session=False))
    session.expire_all()
    return report


# -- reports --------------------------------------------------------------------------------------
def _state_at(transitions: list[tuple[dt.datetime, str]], when: dt.datetime) -> str:
    state = "draft"
    for at, to_state in transitions:
        if at > when:
            break
        state = to_state
    return state


def _share(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def report(work: Workspace, actor: Actor, *, by: ReportBy = "host", since: dt.date | None = None,
           until: dt.date | None = None, now: dt.datetime | None = None) -> list[ReportRow]:
    """Per month of the first request (and host, platform or country): requested, removed, removal rate,
    median days from request to removal, share still up 7 and 30 days after the request (of the
    requests that old; a URL closed by then is not counted), reappearances. ``until`` excluded."""
    now = aware_time(now)
    if by not in ("month", "host", "platform", "country"):
        raise InvalidInput("bad_report", f"a report is by month, host, platform or country, not {by!r}")
    with refusals_audited(work.sessions, actor, "takedown_report", by=by), work.sessions() as session:
        require_takedown_role(actor)
        query = select(Takedown).where(Takedown.first_sent_at.is_not(None))
        query = of_visible_cases(session, actor, query)
        if since is not None:
            query = query.where(Takedown.first_sent_at >= dt.datetime.combine(since, dt.time(), dt.UTC))
        if until is not None:
            query = query.where(Takedown.first_sent_at < dt.datetime.combine(until, dt.time(), dt.UTC))
        takedowns = list(session.scalars(query))
        history: dict[int, list[tuple[dt.datetime, str]]] = defaultdict(list)
        ids = [t.id for t in takedowns]
        for start in range(0, len(ids), 500):
            for takedown_id, at, to_state in session.execute(
                    select(TakedownTransition.takedown_id, TakedownTransition.at, TakedownTransition.to_state)
                    .where(TakedownTransition.takedown_id.in_(ids[start:start + 500]))
                    .order_by(TakedownTransition.id)):
                history[takedown_id].append((at, to_state))
    groups: dict[tuple[str, str], list[Takedown]] = defaultdict(list)
    for t in takedowns:
        group = "" if by == "month" else (t.host_key if by == "host" else getattr(t, by) or "-")
        groups[(t.first_sent_at.strftime("%Y-%m"), group)].append(t)
    rows = []
    for (month, group), members in sorted(groups.items()):
        removed_days = [(t.removed_at - t.first_sent_at).total_seconds() / 86400 for t in members
                        if t.removed_at is not None and t.removed_at >= t.first_sent_at]
        shares = []
        for days in (7, 30):
            up = eligible = 0
            for t in members:
                when = t.first_sent_at + dt.timedelta(days=days)
                if when > now:
                    continue
                state = _state_at(history[t.id], when)
                if state == "closed":
                    continue
                eligible += 1
                up += state != "removed"
            shares.append(_share(up, eligible))
        rows.append(ReportRow(month, group, len(members), len(removed_days), _share(len(removed_days), len(members)),
                              round(statistics.median(removed_days), 2) if removed_days else None, shares[0],
                              shares[1], sum(1 for t in members for _, s in history[t.id] if s == "reappeared")))
    record(work.sessions, actor, "takedown_report", result_count=len(rows), by=by,
           **{k: v.isoformat() for k, v in (("since", since), ("until", until)) if v is not None})
    return rows


def report_csv(rows: list[ReportRow]) -> str:
    return rows_csv(REPORT_COLUMNS, rows)
