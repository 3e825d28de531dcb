"""What the pipeline's DoFns talk to outside their process, as factories they call in ``setup``.

The object store (MinIO or S3), Milvus's collections and writer, the Kafka producer, the
watchlist (case database and enrolled faces) and the worker's metrics endpoint. Production
uses ``PRODUCTION``, the real clients; a test hands ``build_pipeline`` in-memory ones
(tests/support/memory.py) and runs the real graph on a ``TestPipeline`` without any service.
Each factory takes plain arguments (settings, a collection), so the DoFns stay thin shells and
the object is picklable with them: it is shipped to the workers inside every DoFn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymilvus import Collection

from mimamori.core.config import KafkaConfig, Settings
from mimamori.core.metrics import serve_metrics
from mimamori.core.scrape_targets import register_scrape_target
from mimamori.services.image_matches import MediaWatchlist
from mimamori.stores.faces import ensure_face_collection
from mimamori.stores.image_hashes import ensure_pdq_collection
from mimamori.stores.media import MediaIndex, ensure_media_collections
from mimamori.stores.objects import object_client
from mimamori.stores.writer import MilvusWriter
from mimamori.streams.producer import shared_producer


def milvus_writer(collection: Collection, max_unindexed_rows: int | None) -> MilvusWriter:
    return MilvusWriter(collection, max_unindexed_rows=max_unindexed_rows)


def serve_worker_metrics(port: int, address: str, targets_dir: Path | None) -> None:
    """The worker's Prometheus endpoint (once per process), announced to the local Prometheus."""
    served = serve_metrics(port, address)
    if targets_dir is not None:
        register_scrape_target(targets_dir, "mimamori-pipeline", served, address)


@dataclass(frozen=True)
class Backends:
    """Factories of the clients each DoFn makes in ``setup``; the defaults are the real ones."""

    objects: Callable[[Settings], Any] = object_client  # a minio.Minio, or what quacks like one
    media_collections: Callable[[Settings], tuple[Collection, Collection]] = ensure_media_collections
    face_collection: Callable[[Settings], Collection] = ensure_face_collection
    media_index: Callable[[Settings], MediaIndex] = MediaIndex.open
    pdq_collection: Callable[[Settings], Collection] = ensure_pdq_collection  # issue 20: scraped frames' PDQ
    milvus_writer: Callable[[Collection, int | None], MilvusWriter] = milvus_writer
    producer: Callable[[KafkaConfig], Any] = shared_producer  # a kafka.KafkaProducer, or the same shape
    watchlist: Callable[[Settings, str], MediaWatchlist] = MediaWatchlist  # faces and image hashes (issue 20)
    metrics_endpoint: Callable[[int, str, Path | None], None] = serve_worker_metrics


PRODUCTION = Backends()
