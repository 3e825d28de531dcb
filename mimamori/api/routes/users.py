"""Staff accounts and case assignments (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from mimamori.api.schemas import InvitationOut, UserIn
from mimamori.api.security import Admin, Work
from mimamori.services import access, users
from mimamori.services.access import Assignment
from mimamori.services.users import Invitation, UserView

router = APIRouter(tags=["admin"])
Username = Annotated[str, Path(min_length=1, max_length=200)]


def _invitation(work, invitation: Invitation) -> InvitationOut:
    return InvitationOut(username=invitation.username, role=invitation.role, expires_at=invitation.expires_at,
                         url=users.invitation_url(work.settings, invitation.token))


@router.post("/users", status_code=201)
def create_user(body: UserIn, actor: Admin, work: Work) -> InvitationOut:
    """A new staff user; the answer holds their one-time invitation link (set a password and TOTP)."""
    return _invitation(work, users.create_user(work, actor, body.username, body.role))


@router.get("/users")
def list_users(actor: Admin, work: Work) -> list[UserView]:
    return users.list_users(work, actor)


@router.post("/users/{name}/disable")
def disable_user(name: Username, actor: Admin, work: Work) -> dict[str, Any]:
    """The user can no longer sign in; their sessions end now."""
    users.disable_user(work, actor, name)
    return {"username": name, "disabled": True}


@router.post("/users/{name}/enable")
def enable_user(name: Username, actor: Admin, work: Work) -> dict[str, Any]:
    users.enable_user(work, actor, name)
    return {"username": name, "disabled": False}


@router.post("/users/{name}/reset")
def reset_user(name: Username, actor: Admin, work: Work) -> InvitationOut:
    """Forget the user's password and TOTP, end their sessions: a new invitation."""
    return _invitation(work, users.reset_user(work, actor, name))


@router.get("/cases/{case_id}/assignments")
def case_assignments(case_id: str, actor: Admin, work: Work) -> list[Assignment]:
    return access.assignments(work, actor, case_id)


@router.put("/cases/{case_id}/assignments/{username}")
def assign(case_id: str, username: Username, actor: Admin, work: Work) -> dict[str, Any]:
    """Let a staff member (a user, or the holder of API keys of that name) work on the case."""
    access.assign(work, actor, case_id, username)
    return {"case_id": case_id, "username": username, "assigned": True}


@router.delete("/cases/{case_id}/assignments/{username}")
def unassign(case_id: str, username: Username, actor: Admin, work: Work) -> dict[str, Any]:
    access.unassign(work, actor, case_id, username)
    return {"case_id": case_id, "username": username, "assigned": False}
