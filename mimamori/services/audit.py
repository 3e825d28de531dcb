"""Who searched, enrolled, viewed, exported or withdrew what, when, for which case.

Every call of the API and of the case commands writes one row through ``record``, in its own
transaction, so a refused or failed action is recorded as well as a successful one. The
table is append-only in the database (triggers in the first migration). Rows hold ids and
counts, never face images or vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from mimamori.stores.cases import AuditEvent


@dataclass(frozen=True)
class Actor:
    name: str
    role: str  # admin, reviewer, auditor (or "operator" for the local CLI)


def record(sessions: sessionmaker, actor: Actor, action: str, *, case_id: str | None = None,
           target: str | None = None, result_count: int | None = None, outcome: str = "ok",
           **details: Any) -> None:
    with sessions.begin() as session:
        session.add(AuditEvent(actor=actor.name, role=actor.role, action=action, case_id=case_id, target=target,
                               result_count=result_count, outcome=outcome, details=details))


def read(sessions: sessionmaker, *, case_id: str | None = None, actor: str | None = None,
         limit: int = 100, offset: int = 0) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if case_id is not None:
        query = query.where(AuditEvent.case_id == case_id)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    with sessions() as session:
        return list(session.scalars(query.limit(limit).offset(offset)))
