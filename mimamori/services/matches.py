"""Watchlist matches waiting for review, and the review decision.

A match is created by the pipeline's watchlist (or the retro search at enrolment) with
status ``pending_review``; a reviewer confirms or rejects it, or marks it unsure for a second
opinion. Every decision is a row of the append-only decision log (``match_decisions``) and sets
the match's status, note and reviewer. A reviewer sees and decides only the matches of their
cases (services/access.py), and never one that another reviewer has claimed in the workbench
(services/queue.py). Listing and deciding are audited with the reviewer's name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from mimamori.core import metrics
from mimamori.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from mimamori.services import case_models, match_signals, takedowns
from mimamori.services.access import require_case_access, visible_case_ids
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import REVIEW_STATUSES, AuditEvent, Match, MatchDecision, utcnow

# Who may decide: auditors read the log, they do not write it.
DECIDING_ROLES = ("admin", "reviewer", "operator")
OPEN_STATUSES = ("pending_review", "unsure")  # still to decide
# Who sees (and decides) every match of the unsure lane, their own unsure ones too; any other
# reviewer who marked a match unsure leaves it to a second opinion (``second_opinion_needed``).
SEES_ALL_UNSURE = ("admin", "operator")
NOTE_MAX_CHARS = 2000


@dataclass(frozen=True)
class MatchView:
    id: int
    case_id: str
    face_id: int
    media_sha256: str
    similarity: float
    source: str
    status: str
    created_at: dt.datetime
    last_seen_at: dt.datetime | None
    reviewed_by: str | None
    reviewed_at: dt.datetime | None
    note: str | None = None
    signals: dict | None = None  # issue 20: the evidence (which signals fired, their scores)
    matched_by: str = ""  # the reviewer's line of it, e.g. "face 0.71 / PDQ distance 12"

    @classmethod
    def of(cls, match: Match) -> MatchView:
        return cls(match.id, match.case_id, match.face_id, match.media_sha256, match.similarity, match.source,
                   match.status, match.created_at, match.last_seen_at, match.reviewed_by, match.reviewed_at,
                   match.note, match.signals, match_signals.summary(match.signals, match.similarity))


def list_matches(work: Workspace, actor: Actor, case_id: str | None = None, status: str | None = None,
                 limit: int = 100, offset: int = 0) -> list[MatchView]:
    """Newest first, optionally of one case and one status; only the cases the actor may see."""
    query = select(Match).order_by(Match.id.desc())
    with refusals_audited(work.sessions, actor, "view_matches", case_id=case_id), work.sessions() as session:
        if case_id is not None:
            require_case_access(session, actor, case_id)
            query = query.where(Match.case_id == case_id)
        else:
            visible = visible_case_ids(session, actor)
            if visible is not None:
                query = query.where(Match.case_id.in_(sorted(visible)))
        if status is not None:
            query = query.where(Match.status == status)
        rows = [MatchView.of(m) for m in session.scalars(query.limit(limit).offset(offset))]
    record(work.sessions, actor, "view_matches", case_id=case_id, result_count=len(rows))
    return rows


def review(work: Workspace, actor: Actor, match_id: int, status: str, note: str | None = None) -> MatchView:
    """Record a reviewer's decision on a match (or put it back to pending: ``pending_review``)."""
    return record_decisions(work, actor, [match_id], status, note, allowed=REVIEW_STATUSES)[0]


def claim_is_free_or_mine(actor: Actor, now: dt.datetime):
    """The SQL condition: nobody holds the match, the claim has expired, or ``actor`` holds it."""
    return or_(Match.claimed_by.is_(None), Match.claimed_until.is_(None), Match.claimed_until <= now,
               Match.claimed_by == actor.name)


def clean_note(note: str | None) -> str | None:
    if note is None or not note.strip():
        return None
    if len(note) > NOTE_MAX_CHARS:
        raise InvalidInput("note_too_long", f"a note holds at most {NOTE_MAX_CHARS} characters, not {len(note)}")
    return note.strip()


def record_decisions(work: Workspace, actor: Actor, match_ids: list[int], decision: str, note: str | None,
                     *, allowed: tuple[str, ...], bulk: bool = False, open_only: bool = False) -> list[MatchView]:
    """Decide matches in one transaction: decision rows, the matches' state, their claims released, audit rows.

    All or nothing: every match must exist, be of a case the actor is assigned to, and be free
    or claimed by the actor (else ``claimed_by_other``); with ``open_only`` (the queue), still
    to decide or last decided by the actor (else ``already_decided``: a page gone stale while
    another reviewer decided). A repeat (the same reviewer, decision and note as the match
    holds: a double click, a retried request) writes no second decision row and leaves the
    match as it is; a different decision, note or reviewer is a new row.
    """
    ids = list(dict.fromkeys(int(i) for i in match_ids))
    target = f"match:{ids[0]}" if len(ids) == 1 else f"matches:{len(ids)}"
    with refusals_audited(work.sessions, actor, "review", target=target, decision=decision):
        if not ids:
            raise InvalidInput("no_matches", "name at least one match to decide")
        if decision not in allowed:
            raise InvalidInput("unknown_status", f"a review decides {', '.join(allowed)}, not {decision!r}")
        if actor.role not in DECIDING_ROLES:
            raise Forbidden("role_cannot_review", f"a {actor.role} cannot decide matches")
        note = clean_note(note)
        # A confirmation creates the takedowns of the pages the media was seen on (issue 19); the
        # face store's sightings are read before the transaction that creates them.
        sightings = takedowns.confirmation_sightings(work, ids) if decision == "confirmed" else {}
        with work.sessions.begin() as session:
            views = _decide(session, actor, ids, decision, note, bulk, open_only,
                            takedowns.on_decision(work, actor, decision, sightings))
    # Issue 20: the cases' per-case models learn from the committed decision (a failure there leaves it).
    if decision in case_models.LEARNED_DECISIONS:
        case_models.after_decisions(work, actor, {view.case_id for view in views})
    return views


def _refusal(matches: list[Match], actor: Actor, now: dt.datetime) -> Conflict:
    """Why the guarded update left a match out: another reviewer's claim, or their decision."""
    for match in matches:
        if match.claimed_by not in (None, actor.name) and match.claimed_until and match.claimed_until > now:
            return Conflict("claimed_by_other",
                            f"match {match.id} is being reviewed by {match.claimed_by}; it is not yours to decide")
    decided = next((m for m in matches if m.status not in OPEN_STATUSES and m.reviewed_by != actor.name), None)
    if decided is not None:
        return Conflict("already_decided", f"match {decided.id} was decided ({decided.status}) by "
                                           f"{decided.reviewed_by} meanwhile; open it again to change that")
    return Conflict("claimed_by_other", "another reviewer took the match meanwhile")


def marked_unsure_by(session: Session, actor: Actor, match_ids: list[int]) -> set[int]:
    """Which of these matches ``actor`` marked unsure at some time (the decision log says)."""
    if not match_ids:
        return set()
    return set(session.scalars(select(MatchDecision.match_id).where(
        MatchDecision.match_id.in_(match_ids), MatchDecision.actor == actor.name, MatchDecision.decision == "unsure")))


def _require_second_opinion(session: Session, actor: Actor, unsure: list[Match], decision: str) -> None:
    """An unsure match is decided by someone else than the reviewers who marked it unsure (or an admin).

    Marking it unsure again (a double click, a better note) stays theirs; any other decision,
    putting it back to pending included, is refused.
    """
    if actor.role in SEES_ALL_UNSURE or decision == "unsure":
        return
    mine = marked_unsure_by(session, actor, [m.id for m in unsure])
    if mine:
        raise Conflict("second_opinion_needed", f"you marked match {min(mine)} unsure: another reviewer or an "
                                                "admin gives the second opinion")


def _decide(session: Session, actor: Actor, ids: list[int], decision: str, note: str | None,
            bulk: bool, open_only: bool, on_change: Callable[[Session, list[Match], dt.datetime], None] | None = None
            ) -> list[MatchView]:
    found = {m.id: m for m in session.scalars(select(Match).where(Match.id.in_(ids)))}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound("unknown_match", f"no match {missing[0]}")
    for case_id in sorted({m.case_id for m in found.values()}):
        require_case_access(session, actor, case_id)
    _require_second_opinion(session, actor, [m for m in found.values() if m.status == "unsure"], decision)
    now = utcnow()
    # The first write, conditional: it takes the database's write lock (the rows' locks on
    # PostgreSQL) and refuses a claim or a decision another reviewer made since the read above.
    guard = [Match.id.in_(ids), claim_is_free_or_mine(actor, now)]
    if open_only:
        guard.append(or_(Match.status.in_(OPEN_STATUSES), Match.reviewed_by == actor.name))
    released = session.execute(update(Match).where(*guard).values(claimed_by=None, claimed_until=None)
                               .execution_options(synchronize_session=False)).rowcount
    session.expire_all()
    found = {m.id: m for m in session.scalars(select(Match).where(Match.id.in_(ids)))}  # as now locked
    if released != len(ids):
        raise _refusal(list(found.values()), actor, now)
    changed = [m for m in found.values()
               if (m.status, m.note, m.reviewed_by) != (decision, note, actor.name)]
    for match in changed:
        if match.status == "pending_review" and decision != "pending_review":
            metrics.REVIEW_SECONDS.observe((now - match.created_at).total_seconds())
    if changed:
        session.execute(update(Match).where(Match.id.in_([m.id for m in changed]))
                        .values(status=decision, note=note, reviewed_by=actor.name, reviewed_at=now)
                        .execution_options(synchronize_session=False))
    changed_ids = {m.id for m in changed}
    count = len(ids) if bulk else None
    for match_id in ids:
        match = found[match_id]
        if match_id in changed_ids:
            session.add(MatchDecision(match_id=match_id, case_id=match.case_id, decision=decision, note=note,
                                      actor=actor.name, role=actor.role, bulk=bulk, at=now))
        details = {"status": decision, "decision": decision, "note": note is not None}
        if count is not None:
            details["bulk"] = count
        if match_id not in changed_ids:
            details["repeat"] = True
        # In the decision's own transaction: no decision without its audit row.
        session.add(AuditEvent(actor=actor.name, role=actor.role, action="review", case_id=match.case_id,
                               target=f"match:{match_id}", outcome="ok", details=details, at=now))
    if on_change is not None and changed:  # the matches as they were before (the updates bypassed them)
        on_change(session, changed, now)
    session.flush()
    session.expire_all()  # the bulk updates bypassed the loaded objects
    by_id = {m.id: m for m in session.scalars(select(Match).where(Match.id.in_(ids)))}
    return [MatchView.of(by_id[i]) for i in ids]
