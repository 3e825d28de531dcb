"""The HTTP API (FastAPI): cases, consent, enrolment, search, matches, audit log, API keys.

Every route but the OpenAPI schema needs a key (``Authorization: Bearer mmk_...``) and a
role: ``admin`` manages cases and keys, ``reviewer`` searches and reviews matches,
``auditor`` reads the audit log. Every call, refused ones included, leaves an audit row
(``/metrics``, counts only, is Prometheus's and open on the network it is served on).
Bad input is a 4xx with a machine-readable ``error`` and a sentence in ``detail``; an
unexpected failure is a 500 without a stack trace.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Form, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import select

from mimamori.core import metrics
from mimamori.core.config import Settings
from mimamori.services import audit
from mimamori.services.audit import Actor
from mimamori.services.auth import authenticate, create_api_key, revoke_api_key
from mimamori.services.casework import CaseError, Casework, ConsentRecord
from mimamori.stores.cases import Match, utcnow

log = logging.getLogger(__name__)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff")
bearer = HTTPBearer(auto_error=False, description="An API key (mmk_...) or an OIDC bearer token")


class ApiError(Exception):
    def __init__(self, status: int, reason: str, detail: str):
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


# -- request and response bodies ------------------------------------------------------------------
class CaseIn(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    display_name: str = Field(min_length=1, max_length=200)
    match_threshold: float | None = Field(default=None, ge=0.0, le=1.0)


class CaseOut(BaseModel):
    id: str
    display_name: str
    match_threshold: float | None
    threshold_model: str | None = Field(description="The model the threshold was set for; others use their default")
    created_at: dt.datetime
    created_by: str
    photos: int
    matches: int
    consent_in_force: bool


class EnrolmentOut(BaseModel):
    case_id: str
    photos: list[str]
    retro_matches: int


class WithdrawalOut(BaseModel):
    case_id: str
    vectors: int
    objects: int
    photos: int
    matches: int


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["admin", "reviewer", "auditor"]


class KeyOut(BaseModel):
    name: str
    role: str
    key: str = Field(description="Shown once; only its hash is stored")


class MatchOut(BaseModel):
    id: int
    case_id: str
    face_id: int
    media_sha256: str
    similarity: float
    source: str
    status: str
    created_at: dt.datetime
    last_seen_at: dt.datetime | None
    reviewed_by: str | None
    reviewed_at: dt.datetime | None


class ReviewIn(BaseModel):
    status: Literal["confirmed", "rejected", "pending_review"]


class AuditOut(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    role: str
    action: str
    case_id: str | None
    target: str | None
    result_count: int | None
    outcome: str


def require(*roles: str) -> Callable[..., Actor]:
    """A dependency: the caller's key must be valid and of one of these roles (audited either way)."""

    def dependency(request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Actor:
        sessions = request.app.state.casework.sessions
        route = request.scope.get("route")
        action = f"{request.method} {route.path if route else request.url.path}"
        actor = authenticate(sessions, credentials.credentials if credentials else None)
        if actor is None:
            audit.record(sessions, Actor("anonymous", "-"), action, outcome="denied", reason="no valid key")
            raise ApiError(401, "unauthenticated", "send an API key: Authorization: Bearer mmk_...")
        if actor.role not in roles:
            audit.record(sessions, actor, action, outcome="denied", reason=f"needs {'/'.join(roles)}")
            raise ApiError(403, "forbidden", f"this needs the role {' or '.join(roles)}; the key is {actor.role}")
        request.state.actor = actor  # for the audit row of a refusal later in the request
        return actor

    return dependency


Admin = Annotated[Actor, Depends(require("admin"))]
Reviewer = Annotated[Actor, Depends(require("reviewer"))]
AdminOrReviewer = Annotated[Actor, Depends(require("admin", "reviewer"))]
Auditor = Annotated[Actor, Depends(require("auditor"))]


def create_app(settings: Settings, casework: Casework | None = None) -> FastAPI:
    app = FastAPI(title="mimamori", version="1", description=__doc__,
                  responses={401: {"description": "no or unknown key"}, 403: {"description": "role not allowed"}})
    work = casework or Casework(settings)
    app.state.casework = work
    app.state.searcher = None

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

    def searcher():
        if app.state.searcher is None:
            from mimamori.services.search import FaceSearch

            app.state.searcher = FaceSearch(settings)
        return app.state.searcher

    # -- errors: always a reason and a sentence, never a stack trace; every refusal audited ---------
    def audit_refusal(request: Request, reason: str) -> None:
        """One audit row for a request refused after authentication (bad input, unknown case...)."""
        route = request.scope.get("route")
        actor = getattr(request.state, "actor", None) or Actor("anonymous", "-")
        case_id = request.path_params.get("case_id")
        audit.record(work.sessions, actor, f"{request.method} {route.path if route else request.url.path}",
                     case_id=case_id if isinstance(case_id, str) and len(case_id) <= 64 else None,
                     outcome="rejected", reason=reason)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        if error.status not in (401, 403):  # those are audited where the key is checked
            audit_refusal(request, error.reason)
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse({"error": error.reason, "detail": error.detail}, error.status, headers=headers)

    @app.exception_handler(CaseError)
    async def _case_error(request: Request, error: CaseError) -> JSONResponse:
        if not error.audited:
            audit_refusal(request, error.reason)
        return JSONResponse({"error": error.reason, "detail": str(error)}, error.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in error.errors()]
        audit_refusal(request, "invalid_request")
        return JSONResponse({"error": "invalid_request", "detail": problems}, 422)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"error": "internal", "detail": "internal error; see the server log"}, 500)

    async def read_upload(upload: UploadFile) -> tuple[str, bytes, str]:
        content_type = (upload.content_type or "").split(";")[0].strip().lower()
        if content_type not in IMAGE_TYPES:
            got = content_type or "no content type"
            raise ApiError(415, "unsupported_media_type",
                           f"{upload.filename}: {got}; send one of {', '.join(IMAGE_TYPES)}")
        data = await upload.read(settings.api.max_upload_bytes + 1)
        if len(data) > settings.api.max_upload_bytes:
            raise ApiError(413, "too_large", f"{upload.filename}: over {settings.api.max_upload_bytes} bytes")
        return upload.filename or "photo", data, content_type

    # -- keys -------------------------------------------------------------------------------------
    @app.post("/keys", status_code=201, response_model=KeyOut, tags=["admin"])
    def new_key(body: KeyIn, actor: Admin) -> KeyOut:
        key = create_api_key(work.sessions, body.name, body.role)
        audit.record(work.sessions, actor, "create_key", target=f"key:{body.name}", role_granted=body.role)
        return KeyOut(name=body.name, role=body.role, key=key)

    @app.delete("/keys/{name}", tags=["admin"])
    def revoke_key(name: Annotated[str, Path(min_length=1, max_length=200)], actor: Admin) -> dict[str, Any]:
        count = revoke_api_key(work.sessions, name)
        if count == 0:
            raise ApiError(404, "unknown_key", f"no key named {name} in use")
        audit.record(work.sessions, actor, "revoke_key", target=f"key:{name}", result_count=count)
        return {"name": name, "revoked": count}

    # -- cases ------------------------------------------------------------------------------------
    def case_out(case_id: str) -> CaseOut:
        with work.sessions() as session:
            case = work.get_case(session, case_id)
            return CaseOut(id=case.id, display_name=case.display_name, match_threshold=case.match_threshold,
                           threshold_model=case.threshold_model,
                           created_at=case.created_at, created_by=case.created_by, photos=len(case.photos),
                           matches=len(case.matches),
                           consent_in_force=work.active_consent(session, case.id) is not None)

    @app.post("/cases", status_code=201, response_model=CaseOut, tags=["admin"])
    def create_case(body: CaseIn, actor: Admin) -> CaseOut:
        work.create_case(actor, body.id, body.display_name, body.match_threshold)
        return case_out(body.id)

    @app.get("/cases/{case_id}", response_model=CaseOut, tags=["admin"])
    def get_case(case_id: str, actor: AdminOrReviewer) -> CaseOut:
        out = case_out(case_id)
        audit.record(work.sessions, actor, "view_case", case_id=case_id)
        return out

    @app.post("/cases/{case_id}/consent", status_code=201, tags=["admin"])
    def record_consent(case_id: str, body: ConsentRecord, actor: Admin) -> dict[str, str]:
        work.record_consent(actor, case_id, body)
        return {"case_id": case_id, "status": "recorded"}

    @app.post("/cases/{case_id}/photos", status_code=201, response_model=EnrolmentOut, tags=["admin"])
    async def enroll(case_id: str, actor: Admin, photos: Annotated[list[UploadFile], File()]) -> EnrolmentOut:
        files = [await read_upload(upload) for upload in photos]
        result = work.enroll(actor, case_id, files)
        return EnrolmentOut(case_id=result.case_id, photos=result.photos, retro_matches=result.retro_matches)

    @app.delete("/cases/{case_id}", response_model=WithdrawalOut, tags=["admin"])
    def withdraw(case_id: str, actor: Admin) -> WithdrawalOut:
        report = work.withdraw(actor, case_id)
        return WithdrawalOut(**report.__dict__)

    # -- search and review ------------------------------------------------------------------------
    @app.post("/search", tags=["reviewer"])
    async def search(actor: Reviewer, photo: Annotated[UploadFile | None, File()] = None,
                     case_id: Annotated[str | None, Form()] = None,
                     top_k: Annotated[int, Query(ge=1, le=100)] = 10,
                     offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
                     platform: str | None = None, posted_from: dt.datetime | None = None,
                     posted_to: dt.datetime | None = None) -> dict[str, Any]:
        if (photo is None) == (case_id is None):
            raise ApiError(422, "photo_or_case", "send either a photo or a case_id")
        for value in (posted_from, posted_to):
            if value is not None and value.tzinfo is None:
                raise ApiError(422, "naive_time", "give posted_from/posted_to with a time zone")
        upload = await read_upload(photo) if photo is not None else None
        hits = work.search(actor, searcher(), photo=upload, case_id=case_id, top_k=top_k, offset=offset,
                           platform=platform, posted_from=posted_from, posted_to=posted_to)
        return {"results": [hit.to_dict() for hit in hits], "top_k": top_k, "offset": offset}

    @app.get("/cases/{case_id}/export", tags=["reviewer"])
    def export(case_id: str, actor: Reviewer,
               status: Literal["confirmed", "pending_review", "rejected", "all"] = "confirmed") -> dict[str, Any]:
        """The case's matches with every sighting's URL, for takedown requests (no images, no vectors)."""
        return work.export(actor, searcher(), case_id, None if status == "all" else status)

    @app.get("/matches", response_model=list[MatchOut], tags=["reviewer"])
    def list_matches(actor: Reviewer, case_id: str | None = None,
                     status: Literal["pending_review", "confirmed", "rejected"] | None = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 100,
                     offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[MatchOut]:
        query = select(Match).order_by(Match.id.desc())
        if case_id is not None:
            query = query.where(Match.case_id == case_id)
        if status is not None:
            query = query.where(Match.status == status)
        with work.sessions() as session:
            rows = [MatchOut.model_validate(m, from_attributes=True)
                    for m in session.scalars(query.limit(limit).offset(offset))]
        audit.record(work.sessions, actor, "view_matches", case_id=case_id, result_count=len(rows))
        return rows

    @app.post("/matches/{match_id}/review", response_model=MatchOut, tags=["reviewer"])
    def review(match_id: Annotated[int, Path(ge=1, le=2**31 - 1)], body: ReviewIn, actor: Reviewer) -> MatchOut:
        with work.sessions.begin() as session:
            match = session.get(Match, match_id)
            if match is None:
                raise ApiError(404, "unknown_match", f"no match {match_id}")
            if match.status == "pending_review" and body.status != "pending_review":
                metrics.REVIEW_SECONDS.observe((utcnow() - match.created_at).total_seconds())
            match.status, match.reviewed_by, match.reviewed_at = body.status, actor.name, utcnow()
            out = MatchOut.model_validate(match, from_attributes=True)
        audit.record(work.sessions, actor, "review", case_id=out.case_id, target=f"match:{match_id}",
                     status=body.status)
        return out

    # -- audit ------------------------------------------------------------------------------------
    @app.get("/audit", response_model=list[AuditOut], tags=["auditor"])
    def read_audit(actor: Auditor, case_id: str | None = None, who: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[AuditOut]:
        rows = [AuditOut.model_validate(e, from_attributes=True)
                for e in audit.read(work.sessions, case_id=case_id, actor=who, limit=limit, offset=offset)]
        audit.record(work.sessions, actor, "read_audit", case_id=case_id, result_count=len(rows))
        return rows

    return app
