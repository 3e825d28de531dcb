"""Uploaded photos: content type and size checked before a byte is decoded."""

from __future__ import annotations

from fastapi import UploadFile

from mimamori.core.errors import TooLarge, UnsupportedType
from mimamori.services.enrolment import Photo

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff")


VIDEO_TYPES = ("video/mp4", "video/quicktime", "video/webm", "video/x-matroska")  # reference media (issue 20)


async def read_upload(upload: UploadFile, max_bytes: int, types: tuple[str, ...] = IMAGE_TYPES) -> Photo:
    content_type = (upload.content_type or "").split(";")[0].strip().lower()
    if content_type not in types:
        got = content_type or "no content type"
        raise UnsupportedType("unsupported_media_type",
                              f"{upload.filename}: {got}; send one of {', '.join(types)}")
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge("too_large", f"{upload.filename}: over {max_bytes} bytes")
    return upload.filename or "photo", data, content_type
