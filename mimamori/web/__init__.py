"""The review workbench: server-rendered pages for staff, served by the API process.

``mount_web(app)`` adds the pages (``routes/``), the static files (plain CSS and JavaScript,
no CDN, no build step), the security headers of every page, and the pages' answers to a
refusal (an HTML page, or a redirect to sign-in). The API's JSON routes are left as they are.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from mimamori.api.errors import audit_refusal, http_status
from mimamori.core import errors
from mimamori.web.i18n import from_accept_language
from mimamori.web.render import NO_STORE, SECURITY_HEADERS, STATIC, error_text, render
from mimamori.web.routes import router, shared
from mimamori.web.security import SignInRequired, language_of

log = logging.getLogger(__name__)
STATIC_PREFIX = "/static/"


def is_web(request: Request) -> bool:
    """Answered by a workbench page (or its static files), not by a JSON route of the API."""
    if request.url.path.startswith(STATIC_PREFIX):
        return True
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    return getattr(endpoint, "__module__", "").startswith("mimamori.web.")


async def _sign_in_first(_request: Request, error: SignInRequired) -> Response:
    return RedirectResponse(error.next_path, status_code=303)


def _refusal_page(request: Request, message_of: str | errors.MimamoriError, status: int) -> Response:
    language = getattr(request.state, "language", None) or language_of(request)
    return render(request, "error.html", {"message": error_text(language, message_of), "status": status},
                  status=status, language=language)


async def _refused(request: Request, error: errors.MimamoriError) -> Response:
    if not is_web(request):
        return await request.app.state.api_handlers[errors.MimamoriError](request, error)
    server_side = isinstance(error, errors.Unavailable | errors.Misconfigured)
    if not error.audited:
        audit_refusal(request, error.reason, "failed" if server_side else "rejected")
    if server_side:
        log.error("%s %s: %s", request.method, request.url.path, error, exc_info=error)
    return _refusal_page(request, "unavailable" if server_side else error, http_status(error))


async def _invalid(request: Request, error: RequestValidationError) -> Response:
    if not is_web(request):
        return await request.app.state.api_handlers[RequestValidationError](request, error)
    audit_refusal(request, "invalid_request")
    return _refusal_page(request, "invalid_request", 422)


async def _unexpected(request: Request, error: Exception) -> Response:
    if not is_web(request):
        return await request.app.state.api_handlers[Exception](request, error)
    log.exception("unexpected error on a page")
    request.state.language = getattr(request.state, "language", None) or "en"  # no database read now
    response = _refusal_page(request, "unavailable", 500)
    response.headers.update({**SECURITY_HEADERS, **NO_STORE})  # outside the headers middleware
    return response


async def too_large_page(request: Request) -> Response:
    """A browser's upload over the request limit (mimamori/api/limits.py): the error page, read from no database."""
    language = from_accept_language(request.headers.get("accept-language")) or "en"
    request.state.language = language
    response = _refusal_page(request, "too_large", 413)
    response.headers.update({**SECURITY_HEADERS, **NO_STORE})  # answered before the headers middleware
    return response


HSTS = "max-age=31536000; includeSubDomains"  # a year: browsers then never ask over plain HTTP


def _https(request: Request) -> bool:
    """The workbench is served over HTTPS: web.public_url says so (a proxy in front ends TLS)."""
    public_url = request.app.state.workspace.settings.web.public_url or ""
    return public_url.lower().startswith("https://")


async def _web_headers(request: Request, call_next) -> Response:
    response = await call_next(request)
    if _https(request):  # every answer of the host, the API's too
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    if is_web(request):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith(STATIC_PREFIX):
            response.headers["Cache-Control"] = "no-cache"
        else:
            response.headers.update(NO_STORE)
    return response


def mount_web(app: FastAPI) -> None:
    """Pages, static files, headers, and the pages' answers to refusals (the API's kept for its routes)."""
    app.include_router(router)
    first = len(app.router.routes)
    app.include_router(shared)  # browsers' pages on the API's paths: tried before the API's routes
    pages = app.router.routes[first:]
    del app.router.routes[first:]
    app.router.routes[0:0] = pages
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.api_handlers = {kind: app.exception_handlers[kind]
                              for kind in (errors.MimamoriError, RequestValidationError, Exception)}
    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(SignInRequired, _sign_in_first)
    app.add_exception_handler(errors.MimamoriError, _refused)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.middleware("http")(_web_headers)
