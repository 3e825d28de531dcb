"""Takedowns, their notices and the host directory (admins and reviewers; the directory is edited by admins).

The same services as the workbench's pages and the CLI (services/takedowns.py, notices.py,
hosts.py): a reviewer sees and acts on the takedowns of her cases only, and a notice that also
lists other cases' URLs comes to her without its text.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from mimamori.api.security import Admin, AdminOrReviewer, Work
from mimamori.core.errors import InvalidInput
from mimamori.services import hosts, notices, takedowns
from mimamori.services.hosts import HostEntry, ImportResult, UnknownHost
from mimamori.services.notices import NoticeBatch, NoticeDraft
from mimamori.services.takedowns import DueItem, NoticeView, ReportBy, ReportRow, TakedownDetail, TakedownView
from mimamori.stores.takedowns import STATES

router = APIRouter(tags=["takedowns"])

TakedownId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
State = Literal[STATES]  # type: ignore[valid-type]
HEX64 = r"^[0-9a-f]{64}$"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TakedownIn(Body):
    case_id: str = Field(min_length=1, max_length=64)
    page_url: str = Field(min_length=1, max_length=2048, description="The page to have removed (http/https)")
    media_url: str | None = Field(default=None, max_length=2048)
    media_sha256: str | None = Field(default=None, pattern=HEX64)
    media_phash: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    media_pdq: str | None = Field(default=None, pattern=HEX64)
    platform: str | None = Field(default=None, max_length=100)
    found_at: dt.datetime | None = Field(default=None, description="When it was found, with a time zone")
    note: str | None = Field(default=None, max_length=2000)


class TransitionIn(Body):
    state: State
    note: str | None = Field(default=None, max_length=2000,
                             description="Why; for removed without a re-check: your statement (the evidence)")


class EscalateIn(Body):
    takedown_ids: list[Id] = Field(min_length=1, max_length=500)
    note: str | None = Field(default=None, max_length=2000)


class NoticeIn(Body):
    takedown_ids: list[Id] = Field(min_length=1, max_length=500, description="Takedowns of one host")
    language: Literal["en", "ja"] | None = Field(default=None, description="Default: the host's")
    step: int | None = Field(default=None, ge=0, le=100, description="An escalation step (see /takedowns/due)")


class HostsIn(Body):
    yaml: str = Field(min_length=1, max_length=1_000_000, description="A host directory file (YAML)")


# -- takedowns -------------------------------------------------------------------------------------
@router.get("/takedowns")
def list_takedowns(actor: AdminOrReviewer, work: Work, case_id: str | None = None, state: State | None = None,
                   host_key: Annotated[str | None, Query(max_length=300)] = None, needs_action: bool = False,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100,
                   offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[TakedownView]:
    return takedowns.list_takedowns(work, actor, case_id=case_id, state=state, host_key=host_key,
                                    needs_action=needs_action, limit=limit, offset=offset)


@router.post("/takedowns", status_code=201)
def create_takedown(body: TakedownIn, actor: AdminOrReviewer, work: Work) -> TakedownView:
    """A takedown for a URL found elsewhere; the same case, page and media again answer the same record."""
    return takedowns.create_takedown(work, actor, body.case_id, body.page_url, media_url=body.media_url,
                                     media_sha256=body.media_sha256, media_phash=body.media_phash,
                                     media_pdq=body.media_pdq, platform=body.platform, found_at=body.found_at,
                                     note=body.note)


@router.get("/takedowns/due")
def due(actor: AdminOrReviewer, work: Work) -> list[DueItem]:
    """Escalation steps due today, and overdue ones."""
    return takedowns.due(work, actor)


@router.get("/takedowns/report")
def report(actor: AdminOrReviewer, work: Work, by: ReportBy = "host",
           since: dt.date | None = None, until: dt.date | None = None) -> list[ReportRow]:
    return takedowns.report(work, actor, by=by, since=since, until=until)


@router.get("/takedowns/report.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "The report as CSV"}})
def report_csv(actor: AdminOrReviewer, work: Work, by: ReportBy = "host",
               since: dt.date | None = None, until: dt.date | None = None) -> Response:
    rows = takedowns.report(work, actor, by=by, since=since, until=until)
    return Response(takedowns.report_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="takedowns-by-{by}.csv"'})


@router.post("/takedowns/escalate")
def escalate(body: EscalateIn, actor: AdminOrReviewer, work: Work) -> list[TakedownView]:
    """Record that each takedown's next ladder step was taken outside mimamori."""
    return takedowns.escalate(work, actor, body.takedown_ids, note=body.note)


@router.get("/takedowns/{takedown_id}")
def get_takedown(takedown_id: TakedownId, actor: AdminOrReviewer, work: Work) -> TakedownDetail:
    return takedowns.get_takedown(work, actor, takedown_id)


@router.post("/takedowns/{takedown_id}/transition")
def transition(takedown_id: TakedownId, body: TransitionIn, actor: AdminOrReviewer, work: Work) -> TakedownView:
    return takedowns.transition(work, actor, takedown_id, body.state, note=body.note)


# -- notices ---------------------------------------------------------------------------------------
@router.get("/notices")
def list_notices(actor: AdminOrReviewer, work: Work, takedown_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)]
                 = None, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                 offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[NoticeView]:
    return notices.list_notices(work, actor, takedown_id=takedown_id, limit=limit, offset=offset)


@router.get("/notices/batches")
def notice_batches(actor: AdminOrReviewer, work: Work) -> list[NoticeBatch]:
    """Per host, the takedowns waiting for a first notice."""
    return notices.notice_batches(work, actor)


@router.post("/notices/preview")
def preview_notice(body: NoticeIn, actor: AdminOrReviewer, work: Work) -> NoticeDraft:
    """The notice as it would go out now (nothing stored)."""
    return notices.preview_notice(work, actor, body.takedown_ids, language=body.language, step=body.step)


@router.post("/notices/eml", response_class=Response,
             responses={200: {"content": {"message/rfc822": {}}, "description": "The notice as an .eml"}})
def download_eml(body: NoticeIn, actor: AdminOrReviewer, work: Work) -> Response:
    """The notice as an .eml for a mail program; stored as sent, its takedowns move to sent."""
    view, raw = notices.download_eml(work, actor, body.takedown_ids, language=body.language, step=body.step)
    return Response(raw, media_type="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="notice-{view.id}.eml"'})


@router.post("/notices/web-form", status_code=201)
def record_web_form(body: NoticeIn, actor: AdminOrReviewer, work: Work) -> NoticeView:
    """Record that the notice's text was typed into the host's web form (stored as sent)."""
    return notices.record_web_form(work, actor, body.takedown_ids, language=body.language, step=body.step)


@router.post("/notices/send", status_code=201)
def send_notice(body: NoticeIn, actor: AdminOrReviewer, work: Work) -> NoticeView:
    """Send the notice over SMTP to the host's verified e-mail contact (stored as sent)."""
    return notices.send_notice(work, actor, body.takedown_ids, language=body.language, step=body.step)


@router.get("/notices/{notice_id}")
def get_notice(notice_id: TakedownId, actor: AdminOrReviewer, work: Work) -> NoticeView:
    return notices.get_notice(work, actor, notice_id)


# -- the host directory ----------------------------------------------------------------------------
@router.get("/hosts")
def list_hosts(actor: AdminOrReviewer, work: Work) -> list[HostEntry]:
    return hosts.list_hosts(work, actor)


@router.get("/hosts/unknown")
def unknown_hosts(actor: AdminOrReviewer, work: Work) -> list[UnknownHost]:
    """Registrable domains with takedowns and no entry: "unknown host: add a contact"."""
    return hosts.unknown_hosts(work, actor)


@router.get("/hosts.yaml", response_class=Response,
            responses={200: {"content": {"application/yaml": {}}, "description": "The directory as YAML"}})
def export_hosts(actor: AdminOrReviewer, work: Work) -> Response:
    return Response(hosts.export_hosts(work, actor), media_type="application/yaml; charset=utf-8")


@router.post("/hosts/import")
def import_hosts(body: HostsIn, actor: Admin, work: Work) -> ImportResult:
    """Add or replace the entries of a directory file, all or none."""
    return hosts.import_hosts(work, actor, body.yaml)


@router.get("/hosts/{key}")
def get_host(key: Annotated[str, Path(max_length=100)], actor: AdminOrReviewer, work: Work) -> HostEntry:
    return hosts.get_host(work, actor, key)


@router.put("/hosts/{key}")
def save_host(key: Annotated[str, Path(max_length=100)], body: HostEntry, actor: Admin, work: Work) -> HostEntry:
    if body.key != key:
        raise InvalidInput("key_mismatch", f"the body's key {body.key!r} is not the path's {key!r}")
    return hosts.save_host(work, actor, body)


@router.delete("/hosts/{key}")
def delete_host(key: Annotated[str, Path(max_length=100)], actor: Admin, work: Work) -> dict[str, int | str]:
    return {"key": key, "rehomed_takedowns": hosts.delete_host(work, actor, key)}
