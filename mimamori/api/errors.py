"""The API's answer to a refusal: the error family mapped to HTTP statuses, in this one place.

Every refusal after authentication leaves exactly one audit row: the services audit the
refusals of their actions (and mark them), these handlers audit the rest (bad input,
unknown ids) under the caller's key name. A failure nobody foresaw is a 500 without a
stack trace (logged on the server).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from mimamori.core import errors
from mimamori.services import audit
from mimamori.services.audit import Actor

log = logging.getLogger(__name__)

HTTP_STATUS: tuple[tuple[type[errors.MimamoriError], int], ...] = (
    (errors.Unauthenticated, 401), (errors.Forbidden, 403), (errors.NotFound, 404), (errors.Conflict, 409),
    (errors.TooLarge, 413), (errors.UnsupportedType, 415), (errors.InvalidInput, 422), (errors.Unavailable, 503),
    (errors.Misconfigured, 500), (errors.MimamoriError, 400),
)


def http_status(error: errors.MimamoriError) -> int:
    return next(status for kind, status in HTTP_STATUS if isinstance(error, kind))


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return f"{request.method} {route.path if route else request.url.path}"


def audit_refusal(request: Request, reason: str, outcome: str = "rejected") -> None:
    """One audit row for a request refused after authentication (bad input, unknown case...)."""
    actor = getattr(request.state, "actor", None) or Actor("anonymous", "-")
    case_id = request.path_params.get("case_id")
    audit.record(request.app.state.workspace.sessions, actor, _route(request),
                 case_id=case_id if isinstance(case_id, str) else None, outcome=outcome, reason=reason)


async def _refused(request: Request, error: errors.MimamoriError) -> JSONResponse:
    server_side = isinstance(error, errors.Unavailable | errors.Misconfigured)
    # 401 and 403 are audited where the key is checked (mimamori/api/security.py).
    if not error.audited and not isinstance(error, errors.Unauthenticated | errors.Forbidden):
        audit_refusal(request, error.reason, "failed" if server_side else "rejected")
    detail = str(error)
    if server_side:  # the server's business (paths, hosts): logged here, not told to the caller
        log.error("%s: %s", _route(request), error, exc_info=error)
        detail = "the server cannot do this now; see the server log"
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, errors.Unauthenticated) else None
    return JSONResponse({"error": error.reason, "detail": detail}, http_status(error), headers=headers)


async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in error.errors()]
    audit_refusal(request, "invalid_request")
    return JSONResponse({"error": "invalid_request", "detail": problems}, 422)


async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error")
    return JSONResponse({"error": "internal", "detail": "internal error; see the server log"}, 500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.MimamoriError, _refused)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, _unexpected)
