"""Helpers shared by the integration tests: isolated names on the shared stack, publishing, running."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import tempfile
import uuid

from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from kafka import KafkaProducer
from pymilvus import Collection, utility

from mimamori.runner import pipeline_options
from stores.faces import ensure_face_collection
from stores.media import ensure_media_collections
from stores.milvus import connect
from stores.objects import ensure_buckets, object_client
from streams.events import MediaEvent, now_utc
from streams.ingest import raw_object_key
from streams.topics import admin_client, ensure_topics
from streams.topics import read_topic as read_records
from tests.integration import samples as sample_sets
from transforms.pipeline import SourceOptions, build_pipeline

MAX_MEDIA_BYTES = 4_000_000




@contextlib.contextmanager
def isolated_settings(settings):
    """Settings with topics, consumer group, collections, buckets (and a case database) of their own.

    Everything is removed afterwards.
    """
    tag = f"t{uuid.uuid4().hex[:8]}"
    s = settings.namespaced(tag)
    database_dir = tempfile.mkdtemp(prefix=f"mimamori-{tag}-")
    s.database.url = f"sqlite:///{database_dir}/cases.sqlite3"
    for topic in s.kafka.topics.all():
        topic.partitions = 2
    s.pipeline.max_media_bytes = MAX_MEDIA_BYTES
    topics = s.kafka.topics.all()
    ensure_topics(s, topics)
    ensure_buckets(s)
    ensure_face_collection(s)
    ensure_media_collections(s)
    try:
        yield s
    finally:
        admin = admin_client(s)
        admin.delete_topics([t.name for t in topics])
        admin.close()
        alias = connect(s)
        for name in utility.list_collections(using=alias):
            if name.startswith(f"{tag}_"):
                utility.drop_collection(name, using=alias)
        shutil.rmtree(database_dir, ignore_errors=True)
        client = object_client(s)
        for bucket in [b.name for b in s.minio.buckets.all() if b is not s.minio.buckets.milvus]:
            for obj in client.list_objects(bucket, recursive=True):
                client.remove_object(bucket, obj.object_name)
            client.remove_bucket(bucket)


def publish(settings, samples: list[sample_sets.Sample], phase: str, timestamp_ms: int | None = None
            ) -> dict[str, str]:
    """Store each sample's bytes and publish its event; return media id -> sample name."""
    client = object_client(settings)
    producer = KafkaProducer(**settings.kafka.client_options(), acks="all")
    topic = settings.kafka.topics.media_scraped.name
    ids = {}
    for sample in samples:
        media_id = f"{phase}:{sample.name}"
        ids[media_id] = sample.name
        if sample.raw_event is not None:
            producer.send(topic, key=media_id.encode(), value=sample.raw_event, timestamp_ms=timestamp_ms)
            continue
        sha = hashlib.sha256(sample.data or b"missing" + sample.name.encode()).hexdigest()
        key = raw_object_key(sha)
        if sample.data is not None:
            client.put_object(settings.minio.buckets.media.name, key, io.BytesIO(sample.data), len(sample.data))
        event = MediaEvent(media_id=media_id, source_url=f"https://example.test/{phase}/{sample.name}",
                           platform="example", scraped_at=now_utc(), content_type=sample.content_type,
                           object_key=key, sha256=sample.sha256_override or (sha if sample.data else None))
        producer.send(topic, key=media_id.encode(), value=event.to_json(), timestamp_ms=timestamp_ms)
    producer.flush()
    producer.close()
    return ids


def run_pipeline(settings, group: str, runner: str = "prism") -> None:
    options = pipeline_options(settings, runner, until_idle_s=4)
    with BeamTestPipeline(options=options, blocking=True) as pipeline:
        build_pipeline(pipeline, settings, SourceOptions(group_id=group, until_idle_s=4))


def read_topic(settings, topic: str) -> list[dict]:
    return [json.loads(record.value) for record in read_records(settings, topic)]


def query_all(collection: Collection, fields: list[str]) -> list[dict]:
    collection.load()
    return collection.query("", output_fields=fields, limit=16384, consistency_level="Strong")




def snapshot(settings) -> dict[str, int]:
    """How many faces, media rows and sightings the stores hold."""
    faces = ensure_face_collection(settings)
    media, sightings = ensure_media_collections(settings)
    return {"faces": len(query_all(faces, ["face_id"])), "media": len(query_all(media, ["media_key"])),
            "sightings": len(query_all(sightings, ["sighting_key"]))}


def site_config(settings, directory) -> list[str]:
    """CLI arguments that make ``mimamori.cli.main`` use these settings."""
    import yaml

    site = directory / "site.yaml"
    site.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    return ["--config", str(site)]
