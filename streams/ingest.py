"""The reference producer: store media files in the object store, publish one event each.

Scrapers do the same: bytes go to the object store under a content-addressed key, and
the event on ``media.scraped`` names that key (events stay small). Publishing the same
file again stores nothing new and publishes a new event, which the pipeline records as
a sighting.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaProducer
from minio import Minio

from mimamori.core.config import Settings
from mimamori.streams.events import MediaEvent, now_utc

MEDIA_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".mp4", ".webm", ".mov"}


@dataclass(frozen=True)
class Upload:
    path: Path
    event: MediaEvent


def media_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and media files under folders named, in a stable order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")


def raw_object_key(sha256: str) -> str:
    return f"raw/{sha256[:2]}/{sha256}"


def store_bytes(client: Minio, bucket: str, data: bytes, content_type: str) -> tuple[str, str]:
    """Put the bytes under their content address (once); return (key, sha256)."""
    import io

    sha = hashlib.sha256(data).hexdigest()
    key = raw_object_key(sha)
    client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)
    return key, sha


def publish(producer: KafkaProducer, settings: Settings, event: MediaEvent) -> None:
    producer.send(settings.kafka.topics.media_scraped.name, key=event.media_id.encode(), value=event.to_json())


def ingest(settings: Settings, paths: Iterable[Path], platform: str, source_url: str | None,
           producer: KafkaProducer, client: Minio, media_id_prefix: str = "local",
           progress: Callable[[int, Path], None] | None = None) -> list[Upload]:
    bucket = settings.minio.buckets.media.name
    uploads = []
    for count, path in enumerate(media_files(paths), start=1):
        data = path.read_bytes()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        key, sha = store_bytes(client, bucket, data, content_type)
        url = source_url or path.resolve().as_uri()
        # One media id per (content, place): the same file published from another URL is
        # another upload, which the pipeline records as a sighting of the first.
        where = hashlib.sha256(url.encode()).hexdigest()[:8]
        event = MediaEvent(
            media_id=re.sub(r"[^A-Za-z0-9._:@/-]", "_", f"{media_id_prefix}:{sha[:16]}:{where}:{path.name}")[:200],
            source_url=url,
            platform=platform,
            scraped_at=now_utc(),
            content_type=content_type,
            object_key=key,
            sha256=sha,
            size_bytes=len(data),
        )
        publish(producer, settings, event)
        uploads.append(Upload(path, event))
        if progress:
            progress(count, path)
    producer.flush()
    return uploads
