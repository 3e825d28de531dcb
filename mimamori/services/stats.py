"""What the system holds: media, faces, sightings and dead letters, per model."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from pymilvus import Collection, utility

from mimamori.core.config import Settings
from mimamori.stores.milvus import connect, count_entities
from mimamori.streams.topics import read_topic


def _count(collection: Collection, expression: str = "") -> int:
    collection.load()
    return count_entities(collection, expression, consistency_level="Strong")


def dead_letters_by_reason(settings: Settings) -> dict[str, int]:
    """Read the dead-letter topic from start to end and count the reasons."""
    reasons: Counter[str] = Counter()
    for record in read_topic(settings, settings.kafka.topics.media_dlq.name):
        try:
            reasons[json.loads(record.value).get("reason", "unknown")] += 1
        except (ValueError, AttributeError):
            reasons["unreadable"] += 1
    return dict(sorted(reasons.items()))


def collect_stats(settings: Settings) -> dict[str, Any]:
    alias = connect(settings)
    names = utility.list_collections(using=alias)
    models: dict[str, Any] = {}
    prefix = settings.milvus.collection_prefix + "_"
    for name in sorted(names):
        if name.startswith(prefix):
            model = name[len(prefix):].rsplit("_v", 1)[0]
            models.setdefault(model, {})["faces"] = _count(Collection(name, using=alias))
            models[model]["collection"] = name
        elif name.startswith(settings.milvus.media_collection_prefix + "_"):
            model = name[len(settings.milvus.media_collection_prefix) + 1:].rsplit("_v", 1)[0]
            media = Collection(name, using=alias)
            models.setdefault(model, {})["media"] = _count(media)
            models[model]["media_without_faces"] = _count(media, "face_count == 0")
    sightings: dict[str, int] = {}
    if settings.milvus.sightings_collection in names:
        collection = Collection(settings.milvus.sightings_collection, using=alias)
        for match in ("original", "exact", "near"):
            sightings[match] = _count(collection, f'match == "{match}"')
    return {"models": models, "sightings": sightings, "dead_letters": dead_letters_by_reason(settings)}
