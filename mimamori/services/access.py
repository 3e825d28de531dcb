"""Access by case: a reviewer sees only the cases an admin assigned to them.

Admins (and the CLI's local ``operator``, a shell on the server) see every case; a reviewer
sees the cases assigned to their name (a staff user, or an API key of that name: the same
person); an auditor reads the audit log and no case content. Refusals say ``not_assigned``
whether or not the case exists, so a reviewer cannot probe case ids.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mimamori.core.errors import Forbidden, NotFound
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import ApiKey, CaseAssignment, Match, User, get_case

# Roles that manage accounts and assignments and see every case.
ADMIN_ROLES = ("admin", "operator")


@dataclass(frozen=True)
class Assignment:
    case_id: str
    username: str
    assigned_by: str
    assigned_at: dt.datetime


def require_admin(actor: Actor) -> None:
    if actor.role not in ADMIN_ROLES:
        raise Forbidden("forbidden", f"this needs the role admin; you act as {actor.role}")


def visible_case_ids(session: Session, actor: Actor) -> set[str] | None:
    """The case ids ``actor`` may see; None: every case (admins and the local operator)."""
    if actor.role in ADMIN_ROLES:
        return None
    if actor.role != "reviewer":  # auditors read the audit log, not case content
        return set()
    disabled = select(User.id).where(User.username == actor.name, User.disabled_at.is_not(None))
    if session.scalars(disabled).first() is not None:  # a disabled user's name (an API key of it too) sees nothing
        return set()
    return set(session.scalars(select(CaseAssignment.case_id).where(CaseAssignment.username == actor.name)))


def require_case_access(session: Session, actor: Actor, case_id: str) -> None:
    """Refuse (``not_assigned``) a case ``actor`` may not see; the caller's refusals_audited audits it."""
    visible = visible_case_ids(session, actor)
    if visible is not None and case_id not in visible:
        raise Forbidden("not_assigned", f"case {case_id} is not assigned to you; an admin assigns cases")


def _staff_exists(session: Session, username: str) -> bool:
    """A staff user or an API key holder of that name (a key and a user of one name are one person)."""
    if session.scalars(select(User.id).where(User.username == username)).first() is not None:
        return True
    return session.scalars(select(ApiKey.id).where(ApiKey.name == username, ApiKey.revoked_at.is_(None))
                           ).first() is not None


def release_claims(session: Session, username: str, case_id: str | None = None) -> int:
    """Free the matches ``username`` holds (of one case, or all), so others may take them at once."""
    query = update(Match).where(Match.claimed_by == username)
    if case_id is not None:
        query = query.where(Match.case_id == case_id)
    return session.execute(query.values(claimed_by=None, claimed_until=None)
                           .execution_options(synchronize_session=False)).rowcount


def assign(work: Workspace, actor: Actor, case_id: str, username: str) -> None:
    """Let ``username`` work on the case (idempotent)."""
    with refusals_audited(work.sessions, actor, "assign", case_id=case_id, target=f"user:{username}"), \
            work.sessions.begin() as session:
        require_admin(actor)
        get_case(session, case_id)
        if not _staff_exists(session, username):
            raise NotFound("unknown_user", f"no staff user or API key named {username}")
        if session.get(CaseAssignment, (case_id, username)) is None:
            session.add(CaseAssignment(case_id=case_id, username=username, assigned_by=actor.name))
        record(work.sessions, actor, "assign", case_id=case_id, target=f"user:{username}", session=session)


def unassign(work: Workspace, actor: Actor, case_id: str, username: str) -> None:
    """Take the case away from ``username``; ``unknown_assignment`` if it was not theirs."""
    with refusals_audited(work.sessions, actor, "unassign", case_id=case_id, target=f"user:{username}"), \
            work.sessions.begin() as session:
        require_admin(actor)
        found = session.get(CaseAssignment, (case_id, username))
        if found is None:
            raise NotFound("unknown_assignment", f"case {case_id} is not assigned to {username}")
        session.delete(found)
        released = release_claims(session, username, case_id)
        record(work.sessions, actor, "unassign", case_id=case_id, target=f"user:{username}", released=released,
               session=session)


def assignments(work: Workspace, actor: Actor, case_id: str | None = None) -> list[Assignment]:
    """Who works on which case (of one case, or all): admins and auditors see all, a reviewer their own."""
    query = select(CaseAssignment).order_by(CaseAssignment.case_id, CaseAssignment.username)
    if case_id is not None:
        query = query.where(CaseAssignment.case_id == case_id)
    if actor.role not in (*ADMIN_ROLES, "auditor"):
        query = query.where(CaseAssignment.username == actor.name)
    with work.sessions() as session:
        rows = [Assignment(a.case_id, a.username, a.assigned_by, a.assigned_at) for a in session.scalars(query)]
    record(work.sessions, actor, "view_assignments", case_id=case_id, result_count=len(rows))
    return rows
