"""The HTTP API (FastAPI): cases, consent, enrolment, search, matches, audit log, API keys.

Every route but the OpenAPI schema needs a key (``Authorization: Bearer mmk_...``) and a
role: ``admin`` manages cases and keys, ``reviewer`` searches and reviews matches,
``auditor`` reads the audit log. Every call, refused ones included, leaves an audit row
(``/metrics``, counts only, is Prometheus's and open on the network it is served on).
Bad input is a 4xx with a machine-readable ``error`` and a sentence in ``detail``; an
unexpected failure is a 500 without a stack trace.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mimamori.api.errors import install_error_handlers
from mimamori.api.limits import BodyLimit, request_limit
from mimamori.api.routes import audit, case_models, cases, keys, matches, references, search, takedowns, users
from mimamori.core import metrics
from mimamori.core.config import Settings
from mimamori.services.workspace import Workspace
from mimamori.web import mount_web, too_large_page
from mimamori.web.routing import wants_page


def create_app(settings: Settings, workspace: Workspace | None = None) -> FastAPI:
    app = FastAPI(title="mimamori", version="1", description=__doc__,
                  responses={401: {"description": "no or unknown key"}, 403: {"description": "role not allowed"}})
    app.state.workspace = workspace or Workspace(settings)

    @app.middleware("http")
    async def _measure(request: Request, call_next):
        began = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = route.path if route is not None else "unmatched"
        metrics.API_REQUESTS.labels(method=request.method, route=path, status=str(response.status_code)).inc()
        metrics.API_SECONDS.labels(route=path).observe(time.perf_counter() - began)
        return response

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Counts and latencies only (no case data): scraped by Prometheus on the loopback or cluster network."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    install_error_handlers(app)
    for router in (keys.router, users.router, cases.router, search.router, matches.router, audit.router,
                   takedowns.router, references.router, case_models.router):
        app.include_router(router)
    mount_web(app)  # the review workbench's pages and static files (mimamori/web), outside the OpenAPI schema
    # Outermost: bodies bounded, and anonymous ones refused, before FastAPI parses a byte (limits.py).
    limit = BodyLimit.add_to(app, request_limit(settings.api.max_upload_bytes), wants_page, too_large_page)
    app.state.request_limit = limit
    return app
