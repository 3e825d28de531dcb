"""A small client for Milvus: one named pymilvus connection per settings object."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any

from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility

from mimamori.core.config import Settings
from mimamori.core.waiting import wait_until


def _token(settings: Settings) -> str:
    path = settings.milvus.token_file
    return path.read_text().strip() if path and path.exists() else ""


def _alias(settings: Settings) -> str:
    return f"mimamori-{settings.milvus.uri}-{settings.milvus.database}"


def connect(settings: Settings, timeout_s: float = 10.0) -> str:
    """Open (or reuse) a connection for these settings; return its pymilvus alias."""
    alias = _alias(settings)
    if not connections.has_connection(alias):
        connections.connect(alias=alias, uri=settings.milvus.uri, token=_token(settings),
                            db_name=settings.milvus.database, timeout=timeout_s)
    return alias


def disconnect(settings: Settings) -> None:
    alias = _alias(settings)
    if connections.has_connection(alias):
        connections.disconnect(alias)


def _probe_once(alias: str) -> None:
    """Create a scratch collection, write a row, flush it, drop it: what a fresh server can't yet do."""
    name = f"mimamori_readiness_{uuid.uuid4().hex[:8]}"
    schema = CollectionSchema([
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("v", DataType.FLOAT_VECTOR, dim=2),
    ])
    collection = Collection(name, schema, using=alias, shards_num=1)
    try:
        collection.insert([[1], [[0.0, 1.0]]], timeout=10)
        collection.flush(timeout=20)
    finally:
        utility.drop_collection(name, using=alias)


def wait_until_writable(settings: Settings, timeout_s: float = 120.0) -> None:
    """Block until Milvus accepts and flushes a write (it answers /healthz well before that)."""
    def writable() -> bool:
        alias = connect(settings, timeout_s=5)
        _probe_once(alias)
        return True

    wait_until(writable, timeout_s, "Milvus accepting writes", interval_s=1.0)


def ensure_collection(settings: Settings, name: str, schema: CollectionSchema, vector_field: str,
                      vector_index: dict[str, Any], scalar_fields: Sequence[str] = ()) -> Collection:
    """Create the collection, its vector index and Trie indexes on ``scalar_fields`` if missing; load it.

    Idempotent. The schema's description (kind, schema version, model) is the collection's
    identity: an existing collection under this name with another one is refused, so rows
    of two schemas or two models never mix.
    """
    alias = connect(settings)
    if utility.has_collection(name, using=alias):
        collection = Collection(name, using=alias)
        found = json.loads(collection.description or "{}")
        if found != json.loads(schema.description):
            raise RuntimeError(f"collection {name} holds {found}, not {schema.description}: refusing to mix vectors")
    else:
        collection = Collection(name, schema, using=alias, shards_num=settings.milvus.shards)
    if not collection.has_index(index_name=vector_field):
        collection.create_index(vector_field, vector_index, index_name=vector_field)
    for field in scalar_fields:
        if not collection.has_index(index_name=field):
            collection.create_index(field, {"index_type": "Trie"}, index_name=field)
    collection.load()
    return collection


def seen_writes(written_by: dt.datetime | None, clock_skew_s: float) -> dict[str, Any]:
    """A search's consistency options that see every write acknowledged by ``written_by``.

    Strong consistency sees every write up to now, and pays for it: the query waits for the
    next time tick (603 ms a search measured in the writer on the local stack, docs/benchmarks.md).
    Where the caller knows when the writes it must see were acknowledged, a guarantee timestamp
    of that moment (Milvus's hybrid timestamp: milliseconds since the epoch, shifted by 18
    logical bits) costs nothing once it has passed. ``clock_skew_s`` is added: the most the clock
    of the host that noted the moment may lag Milvus's own. ``None`` (not known): Strong.
    """
    if written_by is None:
        return {"consistency_level": "Strong"}
    physical_ms = int((written_by.timestamp() + clock_skew_s) * 1000)
    return {"consistency_level": "Customized", "guarantee_timestamp": physical_ms << 18}


def newest_write(times: list[dt.datetime | None], unknown_is_strong: bool) -> dt.datetime | None:
    """The moment a search must see writes up to, from the times the rows it searches were written:
    the newest. Where a row's time is None and ``unknown_is_strong``, or no time is known, None
    (Strong); else rows without a time are ones with nothing written."""
    known = [t for t in times if t is not None]
    if not known or (unknown_is_strong and len(known) < len(times)):
        return None
    return max(known)


def count_entities(collection: Collection, expression: str = "", consistency_level: str | None = None) -> int:
    """Rows of a loaded collection (matching ``expression``); deleted rows are not counted."""
    options = {"consistency_level": consistency_level} if consistency_level else {}
    return int(collection.query(expression, output_fields=["count(*)"], **options)[0]["count(*)"])
