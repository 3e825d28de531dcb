"""Search by photo or by case (reviewer)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile

from mimamori.api.security import Reviewer, Work
from mimamori.api.uploads import read_upload
from mimamori.services.audit import refusals_audited
from mimamori.services.search import SearchFilters, check_query, search_faces

router = APIRouter(tags=["reviewer"])


@router.post("/search")
async def search(actor: Reviewer, work: Work, photo: Annotated[UploadFile | None, File()] = None,
                 case_id: Annotated[str | None, Form()] = None,
                 top_k: Annotated[int, Query(ge=1, le=100)] = 10,
                 offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
                 platform: str | None = None, posted_from: dt.datetime | None = None,
                 posted_to: dt.datetime | None = None) -> dict[str, Any]:
    filters = SearchFilters(top_k, offset, platform, posted_from, posted_to)
    with refusals_audited(work.sessions, actor, "search", case_id=case_id):
        check_query(photo is not None, case_id, filters)  # before a byte of the upload is read
        upload = await read_upload(photo, work.settings.api.max_upload_bytes) if photo is not None else None
    hits = search_faces(work, actor, photo=upload, case_id=case_id, filters=filters)
    return {"results": [hit.to_dict() for hit in hits], "top_k": top_k, "offset": offset}
