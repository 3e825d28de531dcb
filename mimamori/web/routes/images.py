"""Face images: blurred and greyscale (the reviewer's settings) unless one is revealed.

GET answers the blurred variant; POST ``.../reveal`` (a form post with the CSRF token, made by
the page's script) answers the original bytes of that one image, and is audited. Every answer
is ``Cache-Control: no-store`` (the pages' headers).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mimamori.services import review_images, workbench
from mimamori.web.security import Staff, page, workspace

router = APIRouter()
Reviewing = Annotated[Staff, Depends(page("admin", "reviewer"))]
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]  # matches and photos: INTEGER keys
FaceId = Annotated[int, Path(ge=0, le=2**63 - 1)]  # Milvus INT64


def image_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"


def _image(data: bytes) -> Response:
    return Response(data, media_type=image_type(data), headers={"Content-Disposition": "inline"})


@router.get("/images/matches/{match_id}/found")
def found_face(request: Request, staff: Reviewing, match_id: Id) -> Response:
    return _image(review_images.found_face_image(workspace(request), staff.actor, match_id, staff.view))


@router.post("/images/matches/{match_id}/found/reveal")
async def reveal_found_face(request: Request, staff: Reviewing, match_id: Id) -> Response:
    return _image(await run_in_threadpool(review_images.found_face_image, workspace(request), staff.actor, match_id,
                                          staff.view, True))


@router.get("/images/photos/{photo_id}/enrolled")
def enrolled_face(request: Request, staff: Reviewing, photo_id: Id) -> Response:
    return _image(review_images.enrolled_face_image(workspace(request), staff.actor, photo_id, staff.view))


@router.post("/images/photos/{photo_id}/enrolled/reveal")
async def reveal_enrolled_face(request: Request, staff: Reviewing, photo_id: Id) -> Response:
    return _image(await run_in_threadpool(review_images.enrolled_face_image, workspace(request), staff.actor,
                                          photo_id, staff.view, True))


@router.get("/images/faces/{face_id}/found")
def indexed_face(request: Request, staff: Reviewing, face_id: FaceId) -> Response:
    return _image(workbench.indexed_face_image(workspace(request), staff.actor, face_id, staff.view))


@router.post("/images/faces/{face_id}/found/reveal")
async def reveal_indexed_face(request: Request, staff: Reviewing, face_id: FaceId) -> Response:
    return _image(await run_in_threadpool(workbench.indexed_face_image, workspace(request), staff.actor, face_id,
                                          staff.view, True))
