"""Admin: staff users (create, disable, enable, reset, assign cases) and the organisation's defaults."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from mimamori.core.errors import InvalidInput, MimamoriError
from mimamori.services import access, users, workbench
from mimamori.services.auth import ROLES
from mimamori.services.users import Invitation
from mimamori.web.render import error_text, render
from mimamori.web.security import Staff, page, workspace

router = APIRouter()
Admin = Annotated[Staff, Depends(page("admin"))]
Name = Annotated[str, Form(min_length=1, max_length=200)]


def invitation_link(request: Request, invitation: Invitation) -> str:
    """The link to hand the user: web.public_url's (as the CLI prints it), else the address the admin opened."""
    settings = workspace(request).settings
    if settings.web.public_url:
        return users.invitation_url(settings, invitation.token)
    return str(request.base_url).rstrip("/") + f"/invite/{invitation.token}"


def _users_page(request: Request, staff: Staff, status: int = 200, **context) -> Response:
    work = workspace(request)
    listed = users.list_users(work, staff.actor)
    cases = workbench.list_cases(work, staff.actor)
    return render(request, "admin_users.html", {"users": listed, "cases": cases, "roles": ROLES,
                                                "invitation": None, **context}, status=status)


@router.get("/admin/users")
def users_page(request: Request, staff: Admin, done: str | None = None) -> Response:
    return _users_page(request, staff, notice=done)


def _shown_once(request: Request, staff: Staff, invitation: Invitation) -> Response:
    """The invitation's link on the answer itself (never in a URL): it is shown this once."""
    return _users_page(request, staff, invitation=invitation, invitation_url=invitation_link(request, invitation))


@router.post("/admin/users")
async def create_user(request: Request, staff: Admin, username: Name, role: Annotated[str, Form()]) -> Response:
    try:
        invitation = await run_in_threadpool(users.create_user, workspace(request), staff.actor,
                                             username.strip().lower(), role)
    except MimamoriError as error:
        return _users_page(request, staff, 400, error=error_text(staff.view.language, error))
    return _shown_once(request, staff, invitation)


@router.post("/admin/users/{username}/reset")
async def reset_user(request: Request, staff: Admin, username: str) -> Response:
    invitation = await run_in_threadpool(users.reset_user, workspace(request), staff.actor, username)
    return _shown_once(request, staff, invitation)


@router.post("/admin/users/{username}/disable")
async def disable_user(request: Request, staff: Admin, username: str) -> Response:
    try:
        await run_in_threadpool(users.disable_user, workspace(request), staff.actor, username)
    except MimamoriError as error:
        return _users_page(request, staff, 400, error=error_text(staff.view.language, error))
    return RedirectResponse("/admin/users?done=disabled", status_code=303)


@router.post("/admin/users/{username}/enable")
async def enable_user(request: Request, staff: Admin, username: str) -> Response:
    await run_in_threadpool(users.enable_user, workspace(request), staff.actor, username)
    return RedirectResponse("/admin/users?done=enabled", status_code=303)


@router.post("/admin/assignments")
async def assign(request: Request, staff: Admin, case_id: Name, username: Name) -> Response:
    try:
        await run_in_threadpool(access.assign, workspace(request), staff.actor, case_id, username)
    except MimamoriError as error:
        return _users_page(request, staff, 400, error=error_text(staff.view.language, error))
    return RedirectResponse("/admin/users?done=assigned", status_code=303)


@router.post("/admin/assignments/remove")
async def unassign(request: Request, staff: Admin, case_id: Name, username: Name) -> Response:
    await run_in_threadpool(access.unassign, workspace(request), staff.actor, case_id, username)
    return RedirectResponse("/admin/users?done=unassigned", status_code=303)


@router.get("/admin/settings")
def settings_page(request: Request, staff: Admin, saved: bool = False) -> Response:
    return render(request, "admin_settings.html", {"org": users.organisation_settings(workspace(request)),
                                                   "blur_range": users.BLUR_RADIUS,
                                                   "notice": "saved" if saved else None})


def _whole(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidInput("bad_minutes" if name.endswith("minutes") else "bad_blur_radius",
                           f"{name} is a whole number") from None


@router.post("/admin/settings")
async def save_settings(request: Request, staff: Admin, blur_radius: Annotated[str, Form(max_length=8)],
                        claim_minutes: Annotated[str, Form(max_length=8)],
                        break_minutes: Annotated[str, Form(max_length=8)],
                        language: Annotated[str, Form(max_length=8)],
                        greyscale: Annotated[str, Form(max_length=8)] = "off") -> Response:
    work = workspace(request)
    try:
        values = {"blur_radius": _whole("blur_radius", blur_radius), "claim_minutes": _whole("claim_minutes",
                  claim_minutes), "break_minutes": _whole("break_minutes", break_minutes), "language": language,
                  "greyscale": greyscale == "on"}
        await run_in_threadpool(lambda: users.set_organisation_settings(work, staff.actor, **values))
    except MimamoriError as error:
        return render(request, "admin_settings.html", {"org": users.organisation_settings(work),
                                                       "blur_range": users.BLUR_RADIUS,
                                                       "error": error_text(staff.view.language, error)}, status=400)
    return RedirectResponse("/admin/settings?saved=true", status_code=303)
