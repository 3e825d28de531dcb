"""FetchAndDecode: a media item's bytes from the object store, decoded into upright RGB frames, hashed."""

from __future__ import annotations

from collections.abc import Iterator

from mimamori.core.config import Settings
from mimamori.core.retry import with_retries
from mimamori.media.decode import MediaError, decode_media
from mimamori.media.phash import perceptual_hash
from mimamori.stores.objects import read_media_object
from mimamori.transforms.backends import PRODUCTION, Backends
from mimamori.transforms.elements import Incoming, MediaItem
from mimamori.transforms.stage import Stage


class FetchAndDecode(Stage):
    stage = "decode"

    def __init__(self, settings: Settings, backends: Backends = PRODUCTION):
        self.settings = settings
        self.limits = settings.pipeline
        self.backends = backends

    def setup(self) -> None:
        self.client = self.backends.objects(self.settings)
        self.bucket = self.settings.minio.buckets.media.name

    def handle(self, incoming: Incoming) -> Iterator[MediaItem]:
        event = incoming.event
        data = with_retries(lambda: read_media_object(self.client, self.bucket, event.object_key,
                                                      self.limits.max_media_bytes),
                            f"read of {event.object_key}", store="minio", operation="get_media")
        media = decode_media(data, event.content_type, self.limits)
        if event.sha256 and event.sha256 != media.sha256:
            raise MediaError("sha256_mismatch", f"event says {event.sha256}, the bytes hash to {media.sha256}")
        yield MediaItem(incoming.record, event, media, perceptual_hash(media.frames[0].image))
