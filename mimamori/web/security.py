"""Who is at the browser: the session cookie, the CSRF token of every form, the role of a page.

The session token is the cookie ``mimamori_session`` (HttpOnly, Secure, SameSite=Strict), whose
SHA-256 alone the database keeps (services/users.py). Every form carries the session's CSRF
token in a hidden ``csrf_token`` field; the two forms shown before a session exists (sign-in and
the invitation) carry a random token that must equal the cookie ``mimamori_form`` (double
submit). A POST without the right token is refused (403) and audited. A page asked for
without a session answers with a redirect to the sign-in page, which comes back afterwards
(to a path of this site only).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mimamori.core.errors import Forbidden
from mimamori.services import audit, users
from mimamori.services.audit import Actor
from mimamori.services.users import OrgSettings, SignedIn, ViewSettings
from mimamori.services.workspace import Workspace
from mimamori.web.i18n import from_accept_language

COOKIE = "mimamori_session"
FORM_COOKIE = "mimamori_form"  # the double-submit token of the sign-in and invitation forms
CSRF_FIELD = "csrf_token"
# Where signing in lands. Not the queue for admins: opening the queue claims its batch, and an
# admin sees every case, so landing there would take the reviewers' items for the claim minutes.
HOME = {"admin": "/cases", "reviewer": "/queue", "auditor": "/audit"}


@dataclass(frozen=True)
class Staff:
    """A signed-in staff member, with the organisation's settings and how they see images."""

    signed: SignedIn
    token: str
    org: OrgSettings
    view: ViewSettings

    @property
    def actor(self) -> Actor:
        return self.signed.actor

    @property
    def role(self) -> str:
        return self.signed.role

    @property
    def username(self) -> str:
        return self.signed.username


class SignInRequired(Exception):
    """No session (or not a complete one): the page answers with a redirect to /login."""

    def __init__(self, next_path: str):
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Forbidden):
    reason_default = "csrf"


def workspace(request: Request) -> Workspace:
    return request.app.state.workspace


def safe_next(value: str | None, default: str = "/queue") -> str:
    """A path of this site to go back to: no scheme, no host, no ``//`` or backslash tricks."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in value):
        return default
    return value


def login_redirect_target(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(safe_next(here), safe="/")


def client_of(request: Request) -> str:
    return request.client.host if request.client else "-"


def route_action(request: Request) -> str:
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"


def set_session_cookie(response: Response, token: str, max_age: int) -> None:
    response.set_cookie(COOKIE, token, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")


def form_token(request: Request) -> str:
    """The token for a form shown before a session exists (the cookie's, or a new one)."""
    given = request.cookies.get(FORM_COOKIE, "")
    return given if 20 <= len(given) <= 100 else secrets.token_urlsafe(32)


def set_form_cookie(response: Response, token: str) -> None:
    response.set_cookie(FORM_COOKIE, token, max_age=3600, path="/", secure=True, httponly=True, samesite="strict")


def language_of(request: Request, staff: Staff | None = None) -> str:
    """The user's language, else the organisation's; before sign-in the browser's, else the organisation's."""
    if staff is not None:
        return staff.view.language
    return from_accept_language(request.headers.get("accept-language")) or \
        users.organisation_settings(workspace(request)).language


def _lookup(request: Request, pending_ok: bool) -> Staff | None:
    work = workspace(request)
    token = request.cookies.get(COOKIE)
    signed = users.signed_in(work, token, pending_ok=pending_ok) if token else None
    if signed is None:
        return None
    org = users.organisation_settings(work)
    return Staff(signed, token or "", org, users.effective_view(signed, org))


async def check_csrf(request: Request, expected: str, actor: Actor) -> None:
    """The form's ``csrf_token`` must be ``expected``; else 403, audited."""
    form = await request.form()
    given = form.get(CSRF_FIELD)
    if isinstance(given, str) and expected and hmac.compare_digest(given.encode(), expected.encode()):
        return
    await run_in_threadpool(audit.record, workspace(request).sessions, actor, route_action(request),
                            outcome="denied", reason="csrf")
    error = CsrfRefused("csrf", "the form's CSRF token is missing or wrong; reload the page")
    error.audited = True
    raise error


def page(*roles: str, pending_ok: bool = False) -> Callable[[Request], Coroutine[Any, Any, Staff]]:
    """A dependency: a signed-in staff member (of one of ``roles``, if given); a POST's CSRF token checked."""

    async def dependency(request: Request) -> Staff:
        staff = await run_in_threadpool(_lookup, request, pending_ok)
        if staff is None:
            raise SignInRequired(login_redirect_target(request))
        request.state.staff, request.state.actor = staff, staff.actor
        request.state.language = staff.view.language
        if request.method not in ("GET", "HEAD"):
            await check_csrf(request, staff.signed.csrf_token, staff.actor)
        if roles and staff.role not in roles:
            await run_in_threadpool(audit.record, workspace(request).sessions, staff.actor, route_action(request),
                                    outcome="denied", reason=f"needs {'/'.join(roles)}")
            error = Forbidden("forbidden", f"this page needs the role {' or '.join(roles)}")
            error.audited = True
            raise error
        return staff

    return dependency
