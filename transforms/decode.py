"""Fetch a media item's bytes from the object store and decode them into RGB frames."""

from __future__ import annotations

from collections.abc import Iterator

import imagehash
import numpy as np
from minio.error import S3Error

from mimamori.core.config import Settings
from mimamori.media.decode import MediaError, decode_media
from mimamori.transforms.backends import PRODUCTION, Backends
from mimamori.transforms.elements import Incoming, MediaItem
from mimamori.transforms.stage import Stage


def perceptual_hash(item_image) -> bytes:
    """pHash (64 bits) of a frame, as the bytes of a Milvus binary vector."""
    bits = imagehash.phash(item_image).hash.flatten()
    return np.packbits(bits.astype(np.uint8)).tobytes()


class FetchAndDecode(Stage):
    stage = "decode"

    def __init__(self, settings: Settings, backends: Backends = PRODUCTION):
        self.settings = settings
        self.limits = settings.pipeline
        self.backends = backends

    def setup(self) -> None:
        self.client = self.backends.objects(self.settings)
        self.bucket = self.settings.minio.buckets.media.name

    def _fetch(self, key: str) -> bytes:
        try:
            stat = self.client.stat_object(self.bucket, key)
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject", "NoSuchBucket"):
                raise MediaError("object_missing", f"no object {self.bucket}/{key}") from None
            raise
        if stat.size is not None and stat.size > self.limits.max_media_bytes:
            raise MediaError("file_too_large", f"{stat.size} bytes, over the limit of {self.limits.max_media_bytes}")
        response = self.client.get_object(self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def handle(self, incoming: Incoming) -> Iterator[MediaItem]:
        event = incoming.event
        data = self._fetch(event.object_key)
        media = decode_media(data, event.content_type, self.limits)
        if event.sha256 and event.sha256 != media.sha256:
            raise MediaError("sha256_mismatch", f"event says {event.sha256}, the bytes hash to {media.sha256}")
        yield MediaItem(incoming.record, event, media, perceptual_hash(media.frames[0].image))
