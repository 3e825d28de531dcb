"""The Milvus collection of indexed faces: one collection per embedder, versioned schema."""

from __future__ import annotations

import json

from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, utility

from mimamori.config import Settings
from models.registry import embedder_spec
from stores.milvus import connect

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


def ensure_face_collection(settings: Settings, model_name: str | None = None) -> Collection:
    """Create the face collection and its vector index if missing (idempotent), and load it."""
    model_name = model_name or settings.models.embedder.name
    spec = embedder_spec(model_name)
    alias = connect(settings)
    name = settings.face_collection(model_name)
    if utility.has_collection(name, using=alias):
        collection = Collection(name, using=alias)
        found = json.loads(collection.description or "{}")
        if found.get("model") != model_name or found.get("schema_version") != SCHEMA_VERSION:
            raise RuntimeError(f"collection {name} holds {found}, not model {model_name} "
                               f"schema v{SCHEMA_VERSION}: refusing to mix vectors")
    else:
        collection = Collection(name, face_schema(spec.dimension, model_name), using=alias,
                                shards_num=settings.milvus.shards)
    if not collection.has_index(index_name="embedding"):
        index = settings.milvus.index
        collection.create_index(
            "embedding",
            {"index_type": index.index_type, "metric_type": index.metric_type, "params": index.params},
            index_name="embedding",
        )
    for field in ("media_sha256", "platform"):
        if not collection.has_index(index_name=field):
            collection.create_index(field, {"index_type": "Trie"}, index_name=field)
    collection.load()
    return collection
