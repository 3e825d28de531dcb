"""Who is calling: an API key of a role, checked (and audited) before a route runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mimamori.core.errors import Forbidden, Unauthenticated
from mimamori.services import audit
from mimamori.services.audit import Actor
from mimamori.services.auth import authenticate
from mimamori.services.workspace import Workspace

bearer = HTTPBearer(auto_error=False, description="An API key (mmk_...) or an OIDC bearer token")


def workspace(request: Request) -> Workspace:
    return request.app.state.workspace


def require(*roles: str) -> Callable[..., Actor]:
    """A dependency: the caller's key must be valid and of one of these roles (audited either way)."""

    def dependency(request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Actor:
        sessions = workspace(request).sessions
        route = request.scope.get("route")
        action = f"{request.method} {route.path if route else request.url.path}"
        actor = authenticate(sessions, credentials.credentials if credentials else None)
        if actor is None:
            audit.record(sessions, Actor("anonymous", "-"), action, outcome="denied", reason="no valid key")
            raise Unauthenticated("unauthenticated", "send an API key: Authorization: Bearer mmk_...")
        if actor.role not in roles:
            audit.record(sessions, actor, action, outcome="denied", reason=f"needs {'/'.join(roles)}")
            raise Forbidden("forbidden", f"this needs the role {' or '.join(roles)}; the key is {actor.role}")
        request.state.actor = actor  # for the audit row of a refusal later in the request
        return actor

    return dependency


Work = Annotated[Workspace, Depends(workspace)]
Admin = Annotated[Actor, Depends(require("admin"))]
Reviewer = Annotated[Actor, Depends(require("reviewer"))]
AdminOrReviewer = Annotated[Actor, Depends(require("admin", "reviewer"))]
Auditor = Annotated[Actor, Depends(require("auditor"))]
