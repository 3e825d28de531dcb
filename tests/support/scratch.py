"""A scratch namespace on the shared local stack: topics, collections, buckets, case database.

Tests and benchmarks run beside the user's data (and beside each other) on one stack. Each
gets names of its own (``Settings.namespaced``), its stores created, and everything removed
afterwards: leftovers would pile up in Milvus (every loaded collection costs it memory and
CPU), in MinIO and in Kafka.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator

from pymilvus import utility

from mimamori.core.config import Settings
from mimamori.stores.faces import ensure_face_collection
from mimamori.stores.media import ensure_media_collections
from mimamori.stores.milvus import connect
from mimamori.stores.objects import ensure_buckets, object_client
from mimamori.streams.topics import admin_client, ensure_topics


@contextlib.contextmanager
def scratch_settings(settings: Settings, prefix: str, partitions: int = 2) -> Iterator[Settings]:
    """Settings under a fresh tag (``prefix`` + random hex) with their stores made; removed on exit."""
    tag = f"{prefix}{uuid.uuid4().hex[:8]}"
    scratch = settings.namespaced(tag)
    database_dir = tempfile.mkdtemp(prefix=f"mimamori-{tag}-")
    scratch.database.url = f"sqlite:///{database_dir}/cases.sqlite3"
    for topic in scratch.kafka.topics.all():
        topic.partitions = partitions
    try:
        ensure_topics(scratch, scratch.kafka.topics.all())
        ensure_buckets(scratch)
        ensure_face_collection(scratch)
        ensure_media_collections(scratch)
        yield scratch
    finally:
        remove_scratch(scratch, tag)
        shutil.rmtree(database_dir, ignore_errors=True)


def remove_scratch(scratch: Settings, tag: str) -> None:
    """Delete what carries ``tag``: its topics, its collections, its buckets and their objects."""
    admin = admin_client(scratch)
    try:
        existing = set(admin.list_topics())
        names = [t.name for t in scratch.kafka.topics.all() if t.name in existing]
        if names:
            admin.delete_topics(names)
    finally:
        admin.close()
    alias = connect(scratch)
    prefix = f"{tag.replace('-', '_').replace('.', '_')}_"
    for name in utility.list_collections(using=alias):
        if name.startswith(prefix):
            utility.drop_collection(name, using=alias)
    client = object_client(scratch)
    for bucket in scratch.minio.buckets.all():
        if bucket is scratch.minio.buckets.milvus or not client.bucket_exists(bucket.name):
            continue
        for obj in client.list_objects(bucket.name, recursive=True):
            client.remove_object(bucket.name, obj.object_name)
        client.remove_bucket(bucket.name)
