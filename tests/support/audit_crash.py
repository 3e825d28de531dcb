"""Actions of the services, done by a process that dies the moment their audit row is flushed.

``crash_during(work, action)`` forks; the child arms a hook that ``os._exit``s as soon as the
``ok`` audit row of the action reaches the case database, before its transaction commits, and
does the action. tests/contract/test_audit_atomic.py then looks at what was committed: the
action and its row together, or neither (for actions outside the database: a ``started`` row).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from mimamori.core.config import load_settings
from mimamori.services import access, cases, export, keys, matches, search
from mimamori.services.audit import Actor
from mimamori.services.consent import ConsentRecord, record_consent
from mimamori.services.enrolment import enroll
from mimamori.services.watchlist import record_matches
from mimamori.stores.cases import ApiKey, AuditEvent, Case, CaseAssignment, Consent, Match
from tests.support.workspace import IndexedFace, MemoryWorkspace, consent_record, photo_of, unit

KILLED = 17
ADMIN = Actor("ada", "admin")
CLIENT = (200, 40, 40)
CASE = "c1"


def workspace(database: Path) -> MemoryWorkspace:
    """The workspace the actions run on: SQLite at ``database``, in-memory face stores."""
    indexed = [IndexedFace(11, "a" * 64, unit(1, 0.05)), IndexedFace(12, "b" * 64, unit(0, 1))]
    return MemoryWorkspace(load_settings("local"), database, {CLIENT: [unit(1, 0)]}, indexed)


def prepare(work: MemoryWorkspace) -> None:
    """A case with consent for everything, one enrolled photo, a match waiting, a staff key to assign."""
    cases.create_case(work, ADMIN, CASE, "Client C.")
    enroll(work, ADMIN, CASE, [("c.jpg", photo_of(CLIENT), "image/jpeg")],
           ConsentRecord.model_validate(consent_record()))
    record_matches(work.sessions, [(CASE, 11, "a" * 64, 0.95)], "memory/v1", "stream")
    keys.create_key(work, ADMIN, "rei", "reviewer")


def _match_id(work: MemoryWorkspace) -> int:
    with work.sessions() as session:
        return session.scalars(select(Match.id)).one()


# The action, and what it changed in the database (None: it changes nothing there, it reads).
ACTIONS: dict[str, tuple[Callable[[MemoryWorkspace], Any], Callable[[Session], Any] | None]] = {
    "create_case": (lambda work: cases.create_case(work, ADMIN, "c2", "Client D."),
                    lambda session: session.get(Case, "c2") is not None),
    "record_consent": (lambda work: record_consent(work, ADMIN, CASE, ConsentRecord.model_validate(
                           consent_record(given_at=dt.datetime.now(dt.UTC).isoformat()))),
                       lambda session: session.scalar(select(func.count(Consent.id))) == 2),
    "review": (lambda work: matches.review(work, ADMIN, _match_id(work), "confirmed", "same person"),
               lambda session: session.scalars(select(Match.status)).one() == "confirmed"),
    "create_key": (lambda work: keys.create_key(work, ADMIN, "new-key", "auditor"),
                   lambda session: session.scalars(select(ApiKey).where(ApiKey.name == "new-key")).first()
                   is not None),
    "assign": (lambda work: access.assign(work, ADMIN, CASE, "rei"),
               lambda session: session.get(CaseAssignment, (CASE, "rei")) is not None),
    "withdraw": (lambda work: cases.withdraw(work, ADMIN, CASE), lambda session: session.get(Case, CASE) is None),
    "search": (lambda work: search.search_faces(work, ADMIN, case_id=CASE), None),
    "export": (lambda work: export.export_case(work, ADMIN, CASE, status=None), None),
}

# Actions that reach beyond the case database (Milvus, MinIO): a ``started`` row comes first.
ATTEMPTED = {"withdraw", "search", "export"}


def die_when_audited(action: str) -> None:
    """Exit the process once the action's ``ok`` row is flushed, before its transaction commits."""

    @event.listens_for(Session, "after_flush")
    def _exit(session: Session, _context: Any) -> None:
        if any(isinstance(row, AuditEvent) and row.action == action and row.outcome == "ok" for row in session.new):
            os._exit(KILLED)


def crash_during(work: MemoryWorkspace, action: str) -> int:
    """Do ``action`` in a forked child that dies before its audit row commits; return its exit status.

    A fork, not a new interpreter: the child has the workspace's in-memory stores as they are,
    and starts in milliseconds. It opens connections of its own (the parent's are not shared).
    """
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            work.sessions.kw["bind"].dispose(close=False)
            die_when_audited(action)
            ACTIONS[action][0](work)
            status = 0  # the hook did not fire: the test fails on this status
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
