"""Cases: open, view, consent, enrol, withdraw (admin; reviewers may view), and export for takedowns."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, UploadFile

from mimamori.api.schemas import CaseIn, ConsentRecord
from mimamori.api.security import Admin, AdminOrReviewer, Reviewer, Work
from mimamori.api.uploads import read_upload
from mimamori.services import cases, consent, enrolment, export
from mimamori.services.cases import CaseSummary, WithdrawalReport
from mimamori.services.enrolment import EnrolmentResult

router = APIRouter()


@router.post("/cases", status_code=201, tags=["admin"])
def create_case(body: CaseIn, actor: Admin, work: Work) -> CaseSummary:
    return cases.create_case(work, actor, body.id, body.display_name, body.match_threshold)


@router.get("/cases/{case_id}", tags=["admin"])
def get_case(case_id: str, actor: AdminOrReviewer, work: Work) -> CaseSummary:
    return cases.view_case(work, actor, case_id)


@router.post("/cases/{case_id}/consent", status_code=201, tags=["admin"])
def record_consent(case_id: str, body: ConsentRecord, actor: Admin, work: Work) -> dict[str, str]:
    consent.record_consent(work, actor, case_id, body)
    return {"case_id": case_id, "status": "recorded"}


@router.post("/cases/{case_id}/photos", status_code=201, tags=["admin"])
async def enroll(case_id: str, actor: Admin, work: Work,
                 photos: Annotated[list[UploadFile], File()]) -> EnrolmentResult:
    files = [await read_upload(upload, work.settings.api.max_upload_bytes) for upload in photos]
    return enrolment.enroll(work, actor, case_id, files)


@router.delete("/cases/{case_id}", tags=["admin"])
def withdraw(case_id: str, actor: Admin, work: Work) -> WithdrawalReport:
    return cases.withdraw(work, actor, case_id)


@router.get("/cases/{case_id}/export", tags=["reviewer"])
def export_case(case_id: str, actor: Reviewer, work: Work,
                status: Literal["confirmed", "pending_review", "rejected", "all"] = "confirmed") -> dict[str, Any]:
    """The case's matches with every sighting's URL, for takedown requests (no images, no vectors)."""
    return export.export_case(work, actor, case_id, None if status == "all" else status)
