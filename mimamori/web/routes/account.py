"""My account: change the password, and how I see the workbench (language, blur, greyscale)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from mimamori.core.errors import InvalidInput, MimamoriError
from mimamori.services import users
from mimamori.web.render import error_text, render
from mimamori.web.security import Staff, page, workspace

router = APIRouter()
Signed = Annotated[Staff, Depends(page())]


def _page(request: Request, staff: Staff, status: int = 200, **context) -> Response:
    return render(request, "account.html", {"blur_range": users.BLUR_RADIUS, **context, "min_password":
                                            workspace(request).settings.web.min_password_length}, status=status)


@router.get("/account")
def account(request: Request, staff: Signed, saved: str | None = None) -> Response:
    return _page(request, staff, notice=saved)


@router.post("/account/password")
async def change_password(request: Request, staff: Signed, current: Annotated[str, Form(max_length=2048)] = "",
                          new: Annotated[str, Form(max_length=2048)] = "",
                          new_again: Annotated[str, Form(max_length=2048)] = "") -> Response:
    try:
        if new != new_again:
            raise InvalidInput("passwords_differ", "the two new passwords differ")
        await run_in_threadpool(users.change_password, workspace(request), staff.signed, current, new)
    except MimamoriError as error:
        return _page(request, staff, 400, password_error=error_text(staff.view.language, error))
    return RedirectResponse("/account?saved=password", status_code=303)


def _optional_int(value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput("bad_blur_radius", "a blur radius is a whole number") from None


@router.post("/account/preferences")
async def preferences(request: Request, staff: Signed, language: Annotated[str, Form(max_length=8)] = "",
                      blur_radius: Annotated[str, Form(max_length=8)] = "",
                      greyscale: Annotated[str, Form(max_length=8)] = "") -> Response:
    """Blank fields follow the organisation's defaults."""
    try:
        values = {"language": language or None, "blur_radius": _optional_int(blur_radius),
                  "greyscale": {"on": True, "off": False}.get(greyscale)}
        await run_in_threadpool(lambda: users.set_preferences(workspace(request), staff.signed, use_defaults=True,
                                                              **values))
    except MimamoriError as error:
        return _page(request, staff, 400, preferences_error=error_text(staff.view.language, error))
    return RedirectResponse("/account?saved=preferences", status_code=303)
