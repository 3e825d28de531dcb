"""Signing in (password, then the TOTP code), following an invitation, signing out."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from mimamori.core.errors import InvalidInput, MimamoriError, Unauthenticated
from mimamori.services import users
from mimamori.services.audit import Actor
from mimamori.web.render import error_text, render
from mimamori.web.security import (
    COOKIE,
    FORM_COOKIE,
    HOME,
    Staff,
    check_csrf,
    clear_session_cookie,
    client_of,
    form_token,
    language_of,
    page,
    safe_next,
    set_form_cookie,
    set_session_cookie,
    workspace,
)

router = APIRouter()
Pending = Annotated[Staff, Depends(page(pending_ok=True))]
Signed = Annotated[Staff, Depends(page())]


def _anonymous_form(request: Request, template: str, context: dict, status: int = 200) -> Response:
    token = form_token(request)
    language = language_of(request)
    request.state.language = language
    response = render(request, template, {"form_token": token, **context}, status=status, language=language)
    set_form_cookie(response, token)
    return response


async def _check_form_token(request: Request) -> None:
    await check_csrf(request, request.cookies.get(FORM_COOKIE, ""), Actor("anonymous", "-"))


@router.get("/")
def home(staff: Signed) -> Response:
    return RedirectResponse(HOME.get(staff.role, "/account"), status_code=303)


@router.get("/login")
def login_page(request: Request, next: str = "/", enrolled: bool = False, signed_out: bool = False) -> Response:
    notice = "enrolled" if enrolled else "signed_out" if signed_out else None
    return _anonymous_form(request, "login.html", {"next": safe_next(next, "/"), "notice": notice})


@router.post("/login")
async def login(request: Request, username: Annotated[str, Form(max_length=200)] = "",
                password: Annotated[str, Form(max_length=2048)] = "",
                next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    await _check_form_token(request)
    work = workspace(request)
    try:
        token = await run_in_threadpool(users.sign_in, work, username, password, client_of(request),
                                        request.cookies.get(COOKIE))  # the browser's earlier session ends
    except Unauthenticated as error:
        language = language_of(request)
        return _anonymous_form(request, "login.html", {"next": safe_next(next, "/"), "username": username,
                                                       "error": error_text(language, error)}, status=401)
    response = RedirectResponse("/login/code?next=" + quote(safe_next(next, "/"), safe="/"), status_code=303)
    set_session_cookie(response, token, work.settings.web.second_factor_minutes * 60)
    return response


@router.get("/login/code")
def code_page(request: Request, staff: Pending, next: str = "/") -> Response:
    if staff.signed.second_factor:
        return RedirectResponse(safe_next(next, "/"), status_code=303)
    return render(request, "login_code.html", {"next": safe_next(next, "/")})


@router.post("/login/code")
async def code(request: Request, staff: Pending, code: Annotated[str, Form(max_length=20)] = "",
               next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    work = workspace(request)
    try:
        token = await run_in_threadpool(users.second_factor, work, staff.token, code, client_of(request))
    except Unauthenticated as error:
        if error.reason == "wrong_code":
            return render(request, "login_code.html", {"next": safe_next(next, "/"),
                                                        "error": error_text(staff.view.language, error)}, status=401)
        response = _anonymous_form(request, "login.html", {"next": safe_next(next, "/"),
                                                           "error": error_text(staff.view.language, error)},
                                   status=401)
        clear_session_cookie(response)
        return response
    target = safe_next(next, "/")
    response = RedirectResponse(HOME.get(staff.role, "/account") if target == "/" else target, status_code=303)
    set_session_cookie(response, token, work.settings.web.session_absolute_hours * 3600)  # a new token
    return response


@router.post("/logout")
async def logout(request: Request, staff: Pending) -> Response:
    await run_in_threadpool(users.sign_out, workspace(request), staff.token)
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    clear_session_cookie(response)
    return response


def _enrolment_page(request: Request, token: str, error: str | None = None, status: int = 200) -> Response:
    try:  # a new secret each time the link is opened; the same one again after a refused form
        enrolment = users.begin_enrolment(workspace(request), token, rotate=error is None)
    except Unauthenticated as refusal:
        return _anonymous_form(request, "invite_invalid.html", {"message": error_text(language_of(request), refusal)},
                               status=404)
    minimum = workspace(request).settings.web.min_password_length
    return _anonymous_form(request, "invite.html", {"enrolment": enrolment, "token": token, "error": error,
                                                    "min_password": minimum}, status=status)


@router.get("/invite/{token}")
def invite_page(request: Request, token: str) -> Response:
    return _enrolment_page(request, token)


@router.post("/invite/{token}")
async def invite(request: Request, token: str, password: Annotated[str, Form(max_length=2048)] = "",
                 password_again: Annotated[str, Form(max_length=2048)] = "",
                 code: Annotated[str, Form(max_length=20)] = "") -> Response:
    await _check_form_token(request)
    language = language_of(request)
    try:
        if password != password_again:
            raise InvalidInput("passwords_differ", "the two passwords differ")
        await run_in_threadpool(users.complete_enrolment, workspace(request), token, password, code)
    except MimamoriError as error:
        return await run_in_threadpool(_enrolment_page, request, token, error_text(language, error), 400)
    response = RedirectResponse("/login?enrolled=1", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
