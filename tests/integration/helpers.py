"""Helpers shared by the integration tests: isolated names on the shared stack, publishing, running."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json

from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from kafka import KafkaProducer
from pymilvus import Collection

from mimamori.cli.runner import pipeline_options
from mimamori.stores.faces import ensure_face_collection
from mimamori.stores.media import ensure_media_collections
from mimamori.stores.objects import object_client
from mimamori.streams.events import MediaEvent, now_utc
from mimamori.streams.ingest import raw_object_key
from mimamori.streams.topics import read_topic as read_records
from mimamori.transforms.pipeline import SourceOptions, build_pipeline
from tests.integration import samples as sample_sets
from tests.support.scratch import scratch_settings

MAX_MEDIA_BYTES = 4_000_000




@contextlib.contextmanager
def isolated_settings(settings):
    """Settings with topics, consumer group, collections, buckets and a case database of their own.

    Everything is removed afterwards (mimamori/scratch.py).
    """
    with scratch_settings(settings, "t") as s:
        s.pipeline.max_media_bytes = MAX_MEDIA_BYTES
        yield s


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
