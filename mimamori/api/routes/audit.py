"""The audit log (auditor)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from mimamori.api.schemas import AuditOut
from mimamori.api.security import Auditor, Work
from mimamori.services.audit import read_audit

router = APIRouter(tags=["auditor"])


@router.get("/audit", response_model=list[AuditOut])
def audit_log(actor: Auditor, work: Work, case_id: str | None = None, who: str | None = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[AuditOut]:
    rows = read_audit(work.sessions, actor, case_id=case_id, who=who, limit=limit, offset=offset)
    return [AuditOut.model_validate(row) for row in rows]
