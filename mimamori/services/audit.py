"""Who searched, enrolled, viewed, exported or withdrew what, when, for which case.

Every action of the services writes one row through ``record``: in the action's own transaction
(``session=``) where the action is a write of the case database, so that the two commit together
or not at all; an action that is not, or not only, such a write (a search, an export, deletions
in Milvus and MinIO) commits a ``started`` row first (``begin_attempt``) and its ``ok`` row after.
Rows say a done action as ``ok``, a refusal (a ``MimamoriError`` of bad input, an unknown id, missing
consent) as ``rejected`` with its reason, an outage or a broken installation met on the way
as ``failed``. The table is append-only in the database (triggers in the first migration).
Rows hold ids and counts, never face images or vectors.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mimamori.core.errors import InvalidInput, MimamoriError, Misconfigured, Unavailable
from mimamori.core.spreadsheet import rows_csv
from mimamori.stores.cases import AuditEvent

CASE_ID_LENGTH = 64  # the audit table's case_id column


@dataclass(frozen=True)
class Actor:
    name: str
    role: str  # admin, reviewer, auditor (or "operator" for the local CLI)


def record(sessions: sessionmaker, actor: Actor, action: str, *, case_id: str | None = None,
           target: str | None = None, result_count: int | None = None, outcome: str = "ok",
           session: Session | None = None, **details: Any) -> None:
    """Write one audit row: in ``session`` when given (committed with the action it records, or
    not at all), else in a transaction of its own."""
    if case_id is not None and len(case_id) > CASE_ID_LENGTH:  # not a case id: kept as given, cut, in details
        details["case_id_given"], case_id = case_id[:CASE_ID_LENGTH], None
    row = AuditEvent(actor=actor.name, role=actor.role, action=action, case_id=case_id, target=target,
                     result_count=result_count, outcome=outcome, details=details)
    if session is not None:
        session.add(row)
        return
    with sessions.begin() as own:
        own.add(row)


def begin_attempt(sessions: sessionmaker, actor: Actor, action: str, *, case_id: str | None = None,
                  target: str | None = None, **details: Any) -> str:
    """Commit an ``started`` row before an action that is not (only) a write of the case database:
    a search of Milvus, an export, deletions in Milvus and MinIO, vectors stored at enrolment.

    Returns the attempt's id; the row that completes it (``ok``, written after the action, in the
    transaction of the action's database writes where there are any) carries it too. The table is
    append-only, so a start is never updated: a crash in between leaves the attempt on record,
    a ``started`` row without a completion.
    """
    attempt = uuid.uuid4().hex[:16]
    record(sessions, actor, action, case_id=case_id, target=target, outcome="started", attempt=attempt, **details)
    return attempt


@contextlib.contextmanager
def refusals_audited(sessions: sessionmaker, actor: Actor, action: str, *, case_id: str | None = None,
                     target: str | None = None, **details: Any) -> Iterator[None]:
    """A refusal raised in the block leaves one ``rejected`` row with its reason, then goes on up
    (an outage or a broken installation met on the way: ``failed``).

    The one place refusals are audited: the error is marked, so a front door that audits
    what reaches it (the API's handlers) does not write a second row.
    """
    try:
        yield
    except MimamoriError as error:
        if not error.audited:
            outcome = "failed" if isinstance(error, Unavailable | Misconfigured) else "rejected"
            record(sessions, actor, action, case_id=case_id, target=target, outcome=outcome, reason=error.reason,
                   **details)
            error.audited = True
        raise


def read(sessions: sessionmaker, *, case_id: str | None = None, actor: str | None = None,
         limit: int = 100, offset: int = 0, action: str | None = None, since: dt.datetime | None = None,
         until: dt.datetime | None = None) -> list[AuditEvent]:
    """Newest first; ``since`` and ``until`` (aware times) bound ``at``, until excluded."""
    for value in (since, until):
        if value is not None and value.tzinfo is None:
            raise InvalidInput("naive_time", "give since/until with a time zone")
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if case_id is not None:
        query = query.where(AuditEvent.case_id == case_id)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    with sessions() as session:
        return list(session.scalars(query.limit(limit).offset(offset)))


def read_audit(sessions: sessionmaker, actor: Actor, *, case_id: str | None = None, who: str | None = None,
               limit: int = 100, offset: int = 0, action: str | None = None, since: dt.datetime | None = None,
               until: dt.datetime | None = None, export: bool = False) -> list[AuditEvent]:
    """Audit rows for an auditor; reading the log is itself audited (``export_audit`` for a download)."""
    with refusals_audited(sessions, actor, "export_audit" if export else "read_audit", case_id=case_id):
        rows = read(sessions, case_id=case_id, actor=who, limit=limit, offset=offset, action=action, since=since,
                    until=until)
    record(sessions, actor, "export_audit" if export else "read_audit", case_id=case_id, result_count=len(rows),
           **{k: v for k, v in (("who", who), ("of_action", action)) if v is not None},
           **{k: v.isoformat() for k, v in (("since", since), ("until", until)) if v is not None})
    return rows


AUDIT_COLUMNS = ("id", "at", "actor", "role", "action", "case_id", "target", "result_count", "outcome", "details")


def audit_csv(rows: list[AuditEvent]) -> str:
    return rows_csv(AUDIT_COLUMNS, rows)
