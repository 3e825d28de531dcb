"""Search by photo: upload one, see the nearest indexed faces (blurred), audited as the API's search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mimamori.api.errors import http_status
from mimamori.api.uploads import read_upload
from mimamori.core.errors import MimamoriError, PhotoRejected
from mimamori.services import workbench
from mimamori.services.audit import refusals_audited
from mimamori.services.search import SearchFilters, search_faces
from mimamori.web.render import error_text, render
from mimamori.web.routing import PageRoute
from mimamori.web.security import Staff, page, workspace

router = APIRouter()
shared = APIRouter(route_class=PageRoute)  # paths the JSON API answers too (mimamori/web/routing.py)
Reviewing = Annotated[Staff, Depends(page("admin", "reviewer"))]
TOP_K = 20


@router.get("/search")
def search_page(request: Request, staff: Reviewing) -> Response:
    return render(request, "search.html", {"hits": None, "matched": {}})


@shared.post("/search")
async def search(request: Request, staff: Reviewing, photo: Annotated[UploadFile | None, File()] = None) -> Response:
    work = workspace(request)
    try:
        with refusals_audited(work.sessions, staff.actor, "search", target="photo"):
            if photo is None or not (photo.filename or photo.size):
                raise PhotoRejected("no_photo", "no photo given")
            upload = await read_upload(photo, work.settings.api.max_upload_bytes)
        hits = await run_in_threadpool(lambda: search_faces(work, staff.actor, photo=upload,
                                                            filters=SearchFilters(top_k=TOP_K)))
    except MimamoriError as error:
        return render(request, "search.html", {"hits": None, "matched": {},
                                               "error": error_text(staff.view.language, error)},
                      status=http_status(error))
    matched = workbench.matches_of_faces(work, staff.actor, {hit.face_id for hit in hits})
    return render(request, "search.html", {"hits": hits, "matched": matched})
