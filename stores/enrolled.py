"""Clients' enrolled reference faces in Milvus: one collection per model, partitioned by case.

The collection is small (a team's open cases), so its index is FLAT: exact search, and the
pipeline's watchlist stage asks it once per bundle for all new faces at once. Each case has
its own partition: a search covers only the cases being watched, and withdrawing a case
drops its partition, vectors and all. (Milvus's partition-key feature would do this by
itself, but filtering on a VARCHAR partition key returns nothing on the embedded Milvus
2.3.5 with pymilvus 2.4; explicit partitions work on every version.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import numpy as np
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema

from mimamori.core.config import Settings
from mimamori.models.registry import embedder_spec
from mimamori.stores.media import int64_key
from mimamori.stores.milvus import ensure_collection, seen_writes

SCHEMA_VERSION = 1


def enrolled_key(case_id: str, photo_sha256: str, model_version: str) -> int:
    return int64_key("enrolled", case_id, photo_sha256, model_version)


def ensure_enrolled_collection(settings: Settings, model_name: str | None = None) -> Collection:
    model_name = model_name or settings.models.embedder.name
    fields = [
        FieldSchema("enrolled_id", DataType.INT64, is_primary=True, auto_id=False),
        FieldSchema("embedding", DataType.FLOAT_VECTOR, dim=embedder_spec(model_name).dimension),
        FieldSchema("case_id", DataType.VARCHAR, max_length=64),
        FieldSchema("photo_sha256", DataType.VARCHAR, max_length=64),
        FieldSchema("model_version", DataType.VARCHAR, max_length=128),
    ]
    description = json.dumps({"kind": "mimamori-enrolled", "schema_version": SCHEMA_VERSION, "model": model_name})
    return ensure_collection(settings, settings.enrolled_collection(model_name),
                             CollectionSchema(fields, description=description),
                             "embedding", {"index_type": "FLAT", "metric_type": "IP", "params": {}})


@dataclass(frozen=True)
class EnrolledHit:
    case_id: str
    photo_sha256: str
    similarity: float


def case_partition(case_id: str) -> str:
    """Partition names allow letters, digits and underscores; case ids may hold more."""
    return "case_" + hashlib.sha256(case_id.encode()).hexdigest()[:24]


class EnrolledFaces:
    def __init__(self, settings: Settings, model_name: str | None = None):
        self.collection = ensure_enrolled_collection(settings, model_name)
        self.clock_skew_s = settings.milvus.clock_skew_s

    def _partitions(self) -> set[str]:
        return {partition.name for partition in self.collection.partitions}

    def add(self, case_id: str, photo_sha256: str, model_version: str, vector: np.ndarray) -> int:
        partition = case_partition(case_id)
        if partition not in self._partitions():
            self.collection.create_partition(partition)
            self.collection.load()  # a loaded collection loads its new partition
        key = enrolled_key(case_id, photo_sha256, model_version)
        self.collection.upsert([[key], [vector.astype(np.float32).tolist()], [case_id], [photo_sha256],
                                [model_version]], partition_name=partition)
        return key

    def nearest(self, vectors: np.ndarray, top_k: int, case_ids: list[str],
                written_by: dt.datetime | None = None) -> list[list[EnrolledHit]]:
        """The closest enrolled faces of these cases to each vector (one batched search), best first.

        A face indexed just after an enrolment must see it: ``written_by`` is when the newest of
        these cases' faces was written (``Case.faces_written_at``), and the search sees every write
        up to then (``seen_writes``); None: every write up to now (Strong: 603 ms a search measured
        in the writer, docs/benchmarks.md).
        """
        existing = self._partitions()
        partitions = [p for p in map(case_partition, case_ids) if p in existing]
        if len(vectors) == 0 or not partitions:
            return [[] for _ in range(len(vectors))]
        results = self.collection.search(vectors.astype(np.float32).tolist(), "embedding",
                                         {"metric_type": "IP", "params": {}}, limit=top_k,
                                         partition_names=partitions, output_fields=["case_id", "photo_sha256"],
                                         **seen_writes(written_by, self.clock_skew_s))
        return [[EnrolledHit(hit.entity.get("case_id"), hit.entity.get("photo_sha256"), float(hit.distance))
                 for hit in hits] for hits in results]

    def _rows(self, case_id: str, fields: list[str]) -> list[dict]:
        partition = case_partition(case_id)
        if partition not in self._partitions():
            return []
        return self.collection.query(f"case_id == {json.dumps(case_id)}", output_fields=fields, limit=16384,
                                     partition_names=[partition], consistency_level="Strong")

    def vectors(self, case_id: str) -> np.ndarray:
        return np.array([row["embedding"] for row in self._rows(case_id, ["embedding"])], dtype=np.float32)

    def count(self, case_id: str) -> int:
        return len(self._rows(case_id, ["enrolled_id"]))

    def delete_case(self, case_id: str) -> None:
        """Drop the case's partition: its vectors go with it."""
        partition = case_partition(case_id)
        if partition in self._partitions():
            self.collection.partition(partition).release()
            self.collection.drop_partition(partition)
