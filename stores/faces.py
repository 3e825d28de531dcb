"""The Milvus collection of indexed faces: one collection per embedder, versioned schema."""

from __future__ import annotations

import json

from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, utility

from mimamori.core.config import Settings
from mimamori.models.registry import embedder_spec
from mimamori.stores.milvus import connect, count_entities, ensure_collection

SCHEMA_VERSION = 1


def face_schema(dimension: int, model_name: str) -> CollectionSchema:
    fields = [
        # Derived from (media sha256, frame time, face index, model version): a replay upserts
        # the same key, so a face is stored once however often its media is processed.
        FieldSchema("face_id", DataType.INT64, is_primary=True, auto_id=False),
        FieldSchema("embedding", DataType.FLOAT_VECTOR, dim=dimension),
        FieldSchema("media_sha256", DataType.VARCHAR, max_length=64),
        FieldSchema("frame_ms", DataType.INT64),
        FieldSchema("face_index", DataType.INT32),
        FieldSchema("source_url", DataType.VARCHAR, max_length=2048),
        FieldSchema("platform", DataType.VARCHAR, max_length=64),
        FieldSchema("posted_at", DataType.INT64),
        FieldSchema("indexed_at", DataType.INT64),
        FieldSchema("box", DataType.JSON),
        FieldSchema("det_score", DataType.FLOAT),
        FieldSchema("quality", DataType.FLOAT),
        FieldSchema("model_version", DataType.VARCHAR, max_length=128),
        FieldSchema("crop_key", DataType.VARCHAR, max_length=256),
    ]
    description = json.dumps({"kind": "mimamori-faces", "schema_version": SCHEMA_VERSION, "model": model_name})
    return CollectionSchema(fields, description=description)


def ensure_face_collection(settings: Settings, model_name: str | None = None,
                           collection_name: str | None = None) -> Collection:
    """Create the face collection and its vector index if missing (idempotent), and load it.

    ``collection_name`` overrides the configured name (``bench/scale.py`` fills its own).
    """
    model_name = model_name or settings.models.embedder.name
    index = settings.milvus.index
    return ensure_collection(
        settings, collection_name or settings.face_collection(model_name),
        face_schema(embedder_spec(model_name).dimension, model_name), "embedding",
        {"index_type": index.index_type, "metric_type": index.metric_type, "params": index.params},
        ["media_sha256", "platform"])


def face_collections(settings: Settings) -> list[tuple[str, int]]:
    """Every face collection of this deployment (one per model) with its number of faces."""
    alias = connect(settings)
    prefix = f"{settings.milvus.collection_prefix}_"
    return [(name, count_entities(Collection(name, using=alias)))
            for name in sorted(utility.list_collections(using=alias)) if name.startswith(prefix)]


def search_alias(settings: Settings) -> str:
    """The Milvus alias that search reads through: promoting a model switches it, with no downtime."""
    return f"{settings.milvus.collection_prefix}_search"


def alias_target(settings: Settings) -> str | None:
    """The face collection the search alias points to, or None when there is no alias yet."""
    alias = connect(settings)
    name = search_alias(settings)
    for collection in utility.list_collections(using=alias):
        if name in utility.list_aliases(collection, using=alias):
            return collection
    return None


def point_search_alias(settings: Settings, collection: str) -> None:
    alias = connect(settings)
    name = search_alias(settings)
    if alias_target(settings) is None:
        utility.create_alias(collection, name, using=alias)
    else:
        utility.alter_alias(collection, name, using=alias)


def search_collection(settings: Settings) -> tuple[Collection, str]:
    """The collection search reads (through the alias if one is set) and the model of its vectors."""
    target = alias_target(settings)
    if target is None:
        return ensure_face_collection(settings), settings.models.embedder.name
    collection = Collection(target, using=connect(settings))
    collection.load()
    return collection, json.loads(collection.description)["model"]
