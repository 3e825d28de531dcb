"""Reference media and hash lists of a case (issue 20): thin calls into services/references.py."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import PlainTextResponse

from mimamori.api.security import Admin, AdminOrReviewer, Work
from mimamori.api.uploads import IMAGE_TYPES, VIDEO_TYPES, read_upload
from mimamori.core.errors import InvalidInput
from mimamori.services import references
from mimamori.services.references import ReferenceResult, ReferenceView

router = APIRouter()
HASH_LIST_TYPES = ("text/plain", "text/csv", "application/octet-stream")


@router.post("/cases/{case_id}/references", status_code=201, tags=["admin"])
async def add_references(case_id: str, actor: Admin, work: Work, media: Annotated[list[UploadFile], File()],
                         label: Annotated[str | None, Form(max_length=200)] = None) -> ReferenceResult:
    """Enrol the client's known images or videos: kept as PDQ hashes, a face vector and a blurred thumbnail."""
    files = [await read_upload(upload, work.settings.api.max_upload_bytes, IMAGE_TYPES + VIDEO_TYPES)
             for upload in media]
    return references.add_references(work, actor, case_id, files, label)


@router.get("/cases/{case_id}/references", tags=["reviewer"])
def list_references(case_id: str, actor: AdminOrReviewer, work: Work) -> list[ReferenceView]:
    return references.list_references(work, actor, case_id)


@router.get("/cases/{case_id}/hashes", tags=["admin"], response_class=PlainTextResponse)
def export_hashes(case_id: str, actor: Admin, work: Work,
                  format: Literal["te", "csv"] = "te") -> PlainTextResponse:
    """The case's PDQ hashes as a ThreatExchange/HMA hash list (no image, no case detail)."""
    text = references.export_hash_list(work, actor, case_id, format)
    return PlainTextResponse(text, media_type="text/csv" if format == "csv" else "text/plain")


@router.post("/cases/{case_id}/hashes", status_code=201, tags=["admin"])
async def import_hashes(case_id: str, actor: Admin, work: Work, hash_list: Annotated[UploadFile, File()],
                        label: Annotated[str | None, Form(max_length=200)] = None) -> ReferenceResult:
    """A partner's hash list (``pdq <hex>`` lines or the CSV export) as references of the case."""
    _name, data, _type = await read_upload(hash_list, work.settings.api.max_upload_bytes, HASH_LIST_TYPES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("bad_hash_list", "a hash list is UTF-8 text") from None
    return references.import_hash_list(work, actor, case_id, text, label)
