"""The events on mimamori's topics: typed, versioned, validated on both ends.

Each event has a JSON Schema in ``streams/schemas/`` (``<topic>.v<N>.json``). A producer
validates before it sends and the pipeline validates what it receives, so a malformed
message becomes a dead letter with a reason instead of an exception deep in a transform.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from mimamori.core.errors import InvalidInput
from mimamori.core.timefmt import now_iso_z

SCHEMAS = Path(__file__).parent / "schemas"
MEDIA_SCRAPED_VERSION = 1


class EventError(InvalidInput):
    """An event that cannot be accepted; ``reason`` is the dead-letter reason code."""


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validate(name: str, document: dict[str, Any]) -> None:
    error = jsonschema.exceptions.best_match(_validator(name).iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(event)"
        raise EventError("schema_invalid", f"{where}: {error.message}")


def now_utc() -> str:
    return now_iso_z()


def epoch_seconds(value: str | None) -> int:
    """An RFC 3339 time as whole seconds since the epoch; 0 when absent."""
    if value is None:
        return 0
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


@dataclass(frozen=True)
class MediaEvent:
    """A newly scraped media item; its bytes are in the object store under ``object_key``."""

    media_id: str
    source_url: str
    platform: str
    scraped_at: str
    content_type: str
    object_key: str
    page_url: str | None = None
    posted_at: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    schema_version: int = MEDIA_SCRAPED_VERSION

    def to_json(self) -> bytes:
        document = dataclasses.asdict(self)
        validate("media_scraped.v1", document)
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> MediaEvent:
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise EventError("malformed_json", f"not JSON: {error}") from None
        if not isinstance(document, dict):
            raise EventError("malformed_json", f"expected a JSON object, got {type(document).__name__}")
        version = document.get("schema_version")
        if version != MEDIA_SCRAPED_VERSION:
            raise EventError("unsupported_schema_version",
                             f"schema_version {version!r}; this pipeline reads version {MEDIA_SCRAPED_VERSION}")
        validate("media_scraped.v1", document)
        return cls(**document)

    @property
    def posted_at_epoch(self) -> int:
        return epoch_seconds(self.posted_at)


@dataclass(frozen=True)
class KafkaRecord:
    """A message as read from Kafka, kept whole so a dead letter can carry the original."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes

    def describe(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "key": self.key.decode("utf-8", "replace") if self.key is not None else None,
            "value_base64": base64.b64encode(self.value).decode(),
        }


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    stage: str
    error: str
    original: dict[str, Any]
    media_id: str | None = None
    failed_at: str = dataclasses.field(default_factory=now_utc)
    schema_version: int = 1

    def to_json(self) -> bytes:
        document = dataclasses.asdict(self)
        document["error"] = document["error"][:4000]
        validate("dead_letter.v1", document)
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> DeadLetter:
        document = json.loads(raw)
        validate("dead_letter.v1", document)
        return cls(**document)


def face_indexed_json(document: dict[str, Any]) -> bytes:
    document = {"schema_version": 1, **document}
    validate("face_indexed.v1", document)
    return json.dumps(document, separators=(",", ":")).encode()


def match_json(document: dict[str, Any]) -> bytes:
    document = {"schema_version": 1, **document}
    validate("match.v1", document)
    return json.dumps(document, separators=(",", ":")).encode()
