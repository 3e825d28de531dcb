"""Request bodies bounded before anything reads them, and anonymous bodies refused unread.

FastAPI parses a form or a JSON body before a route's dependencies run, so the sign-in check
(the API key, the workbench's session) comes after the whole upload was received and parsed.
``BodyLimit`` is the outermost ASGI layer of the app (the API and the workbench alike):

- a body over ``limit`` bytes is refused (413, ``too_large``): at once when ``Content-Length``
  says so, else as soon as the bytes streamed in pass it (a chunked upload);
- a body sent without any credential is refused before a byte of it is read: a browser's post
  without the session cookie goes to the sign-in page (303), an API call without an
  ``Authorization`` header gets the API's 401 (the sign-in and invitation forms, which come
  before a session, are the only exceptions).

The API's answer is its JSON error; a browser's (``routing.wants_page``) the HTML error page.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mimamori.services import audit
from mimamori.services.audit import Actor

# An enrolment posts several photos of up to api.max_upload_bytes each, plus the form's fields.
PHOTOS_PER_REQUEST = 8
FORM_OVERHEAD_BYTES = 1024 * 1024
SESSION_COOKIE = "mimamori_session"  # mimamori/web/security.py's COOKIE
PUBLIC_POSTS = re.compile(r"^/(login|invite/[^/]+)$")  # forms shown before a session exists
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def request_limit(max_upload_bytes: int) -> int:
    """The largest request body the app reads: PHOTOS_PER_REQUEST uploads of the largest size and the form."""
    return max_upload_bytes * PHOTOS_PER_REQUEST + FORM_OVERHEAD_BYTES


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}


def _has_session_cookie(cookie: bytes) -> bool:
    return any(part.strip().startswith(SESSION_COOKIE.encode() + b"=") and part.strip() != SESSION_COOKIE.encode()
               + b"=" for part in cookie.split(b";"))


def json_too_large(limit: int) -> Response:
    return JSONResponse({"error": "too_large", "detail": f"the request body is over {limit} bytes"}, 413)


class BodyLimit:
    """See the module's docstring. ``page_too_large`` answers a browser (the workbench's error page)."""

    def __init__(self, app: ASGIApp, limit: int, wants_page: Callable[[Scope], bool],
                 page_too_large: Callable[[Request], Awaitable[Response]]):
        self.app, self.limit, self.wants_page, self.page_too_large = app, limit, wants_page, page_too_large

    @classmethod
    def add_to(cls, app, limit: int, wants_page: Callable[[Scope], bool],
               page_too_large: Callable[[Request], Awaitable[Response]]) -> int:
        """Wrap ``app`` (a FastAPI app, after its other middleware: this one is then the outermost)."""
        app.add_middleware(cls, limit=limit, wants_page=wants_page, page_too_large=page_too_large)
        return limit

    async def too_large(self, request: Request) -> Response:
        if self.wants_page(request.scope):
            return await self.page_too_large(request)
        return json_too_large(self.limit)

    async def _early(self, scope: Scope) -> Response | None:
        """The answer to give without reading the body, if any."""
        headers = _headers(scope)
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            return await self.too_large(Request(scope))
        sends_body = (length.isdigit() and int(length) > 0) or b"transfer-encoding" in headers
        if scope["method"] not in BODY_METHODS or not sends_body or PUBLIC_POSTS.match(scope.get("path", "")):
            return None
        signed_in = _has_session_cookie(headers.get(b"cookie", b""))
        if signed_in:  # a browser's session (a page's own fetch, as a reveal, asks for no HTML); checked by the route
            return None
        if self.wants_page(scope):
            return RedirectResponse("/login", status_code=303)
        if b"authorization" not in headers:  # audited as the key check audits it (api/security.py)
            await run_in_threadpool(audit.record, scope["app"].state.workspace.sessions, Actor("anonymous", "-"),
                                    f"{scope['method']} {scope.get('path', '')}"[:50], outcome="denied",
                                    reason="no valid key")
            return JSONResponse({"error": "unauthenticated", "detail": "send an API key: Authorization: Bearer "
                                 "mmk_..."}, 401, headers={"WWW-Authenticate": "Bearer"})
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        early = await self._early(scope)
        if early is not None:
            await early(scope, receive, send)
            return
        await self._bounded(scope, receive, send)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the body as it streams in; past the limit, answer 413 and tell the app the client left.

        Raising from ``receive`` would not do: the app's own middleware runs it in task groups,
        which wrap the exception, and FastAPI makes any body error a 400. So the 413 is sent
        here, the app reads a disconnect, and whatever it answers after that is dropped.
        """
        received, started, answered = 0, False, False

        async def bounded() -> Message:
            nonlocal received, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    if not started:
                        await (await self.too_large(Request(scope)))(scope, receive, send)
                    answered = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded, guarded)
        except Exception:
            if not answered:
                raise
