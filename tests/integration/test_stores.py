"""MinIO buckets and the Milvus face collection, created idempotently from configuration."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, utility
from pymilvus.exceptions import MilvusException

from mimamori.core.config import BucketConfig
from mimamori.stores.faces import ensure_face_collection
from mimamori.stores.media import ensure_media_collections, page_url_from_store, stored_page_url
from mimamori.stores.milvus import connect, count_entities
from mimamori.stores.objects import ensure_bucket, object_client
from mimamori.stores.writer import IndexGate, MilvusWriter, row_bytes
from tests.conftest import unique
from tests.integration.helpers import isolated_settings

pytestmark = pytest.mark.integration


def test_bucket_with_lifecycle_rule_is_created_once(stack, settings):
    client = object_client(settings)
    bucket = BucketConfig(name=unique("test-bucket"), expire_days=3)
    ensure_bucket(client, bucket)
    ensure_bucket(client, bucket)
    try:
        rules = client.get_bucket_lifecycle(bucket.name).rules
        assert [(r.rule_id, r.expiration.days) for r in rules] == [("expire-after-3d", 3)]
        client.put_object(bucket.name, "a/b.bin", io.BytesIO(b"bytes"), 5)
        assert client.get_object(bucket.name, "a/b.bin").read() == b"bytes"
    finally:
        for obj in client.list_objects(bucket.name, recursive=True):
            client.remove_object(bucket.name, obj.object_name)
        client.remove_bucket(bucket.name)


def test_configured_buckets_exist_after_up(stack, settings):
    client = object_client(settings)
    for bucket in settings.minio.buckets.all():
        assert client.bucket_exists(bucket.name)


@pytest.fixture
def face_settings(settings):
    isolated = settings.model_copy(deep=True)
    isolated.milvus.collection_prefix = unique("test_faces", "_")
    yield isolated
    alias = connect(isolated)
    for name in utility.list_collections(using=alias):
        if name.startswith(isolated.milvus.collection_prefix):
            utility.drop_collection(name, using=alias)


def test_face_collection_is_created_once_with_its_index(stack, face_settings):
    first = ensure_face_collection(face_settings, "facenet-vggface2")
    second = ensure_face_collection(face_settings, "facenet-vggface2")
    assert first.name == second.name == face_settings.face_collection("facenet-vggface2")
    vector = next(f for f in second.schema.fields if f.name == "embedding")
    assert vector.params["dim"] == 512
    index = second.index(index_name="embedding")
    assert index.params["index_type"] == face_settings.milvus.index.index_type


def test_models_get_separate_collections_and_a_foreign_collection_is_refused(stack, face_settings):
    facenet = ensure_face_collection(face_settings, "facenet-vggface2")
    dlib = ensure_face_collection(face_settings, "dlib-resnet")
    assert facenet.name != dlib.name
    assert next(f for f in dlib.schema.fields if f.name == "embedding").params["dim"] == 128

    alias = connect(face_settings)
    utility.drop_collection(dlib.name, using=alias)
    impostor = CollectionSchema([FieldSchema("id", DataType.INT64, is_primary=True),
                                 FieldSchema("embedding", DataType.FLOAT_VECTOR, dim=128)],
                                description='{"kind": "mimamori-faces", "schema_version": 1, "model": "x"}')
    Collection(dlib.name, impostor, using=alias)
    with pytest.raises(RuntimeError, match="refusing to mix vectors"):
        ensure_face_collection(face_settings, "dlib-resnet")


def writer_rows(count: int, start: int = 0) -> list[dict]:
    rng = np.random.default_rng(start)
    vectors = rng.standard_normal((count, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [{"face_id": start + i, "embedding": vectors[i], "media_sha256": f"{start + i:064x}", "frame_ms": 0,
             "face_index": 0, "source_url": f"https://example.org/{start + i}.jpg", "platform": "test",
             "posted_at": 0, "indexed_at": 0, "box": {"x1": 0.0, "y1": 0.0, "x2": 1.0, "y2": 1.0},
             "det_score": 0.99, "quality": 0.5, "model_version": "test", "crop_key": f"k/{start + i}.jpg"}
            for i in range(count)]


def test_writer_cuts_requests_by_bytes_and_a_rewrite_adds_nothing(stack, face_settings):
    collection = ensure_face_collection(face_settings, "dlib-resnet")
    rows = writer_rows(300)
    per_row = row_bytes(rows[0])
    assert 128 * 4 < per_row < 128 * 4 + 400  # the vector's bytes plus the strings' and the numbers'
    def requests_sent() -> float:
        return REGISTRY.get_sample_value("mimamori_milvus_write_duration_seconds_count",
                                         {"collection": collection.name}) or 0.0

    before = requests_sent()

    writer = MilvusWriter(collection, request_bytes=20 * per_row, in_flight=3)
    writer.write(rows[:150])
    writer.write(rows[150:])
    assert writer.wait() == 300
    assert requests_sent() - before == 15  # 300 rows, 20 to a request
    assert count_entities(collection, consistency_level="Strong") == 300

    writer.write(rows[:100])  # a replay: the same keys
    writer.write(writer_rows(10, start=300))
    writer.close(flush=True)
    assert writer.rows_written == 410
    assert count_entities(collection, consistency_level="Strong") == 310
    assert collection.num_entities >= 310  # flushed: the rows are in sealed segments' binlogs


def test_writer_reports_a_bad_row_at_once(stack, face_settings):
    collection = ensure_face_collection(face_settings, "dlib-resnet")
    bad = writer_rows(3)
    bad[1]["face_id"] = "not a number"  # the primary key is an INT64
    writer = MilvusWriter(collection)
    writer.write(bad)
    began = time.perf_counter()
    with pytest.raises(MilvusException):
        writer.wait()
    assert time.perf_counter() - began < 5  # an input error is not retried
    writer.close(flush=False)


def test_closing_a_writer_whose_collection_was_dropped_is_quiet(stack, face_settings, caplog):
    """Beam tears workers down late; a test or bench may have dropped its collections by then."""
    collection = ensure_face_collection(face_settings, "dlib-resnet")
    writer = MilvusWriter(collection)
    writer.write(writer_rows(5))
    assert writer.wait() == 5
    utility.drop_collection(collection.name, using=collection._using)
    with caplog.at_level("WARNING"):
        writer.close(flush=True)
    assert not [record for record in caplog.records if record.levelname in ("WARNING", "ERROR")]


def test_index_gate_returns_once_milvus_indexed_the_sealed_rows(stack, face_settings):
    collection = ensure_face_collection(face_settings, "dlib-resnet")
    gate = IndexGate(collection, max_unindexed_rows=1, check_s=0.2)
    assert gate.unindexed_rows() == 0  # nothing sealed yet
    writer = MilvusWriter(collection, max_unindexed_rows=None)
    writer.write(writer_rows(3000))  # above Milvus's 1,024 rows that a segment needs to be indexed
    writer.close(flush=True)  # sealed: now counted, unindexed until the index node builds it
    gate.wait()
    progress = utility.index_building_progress(collection.name, index_name=gate._index_name, using=collection._using)
    assert progress["total_rows"] == 3000
    assert progress["indexed_rows"] >= 2999


def test_a_sealed_segment_of_sightings_without_page_urls_loads(stack, settings):
    """A page URL is often unknown, so a whole segment of sightings may lack one.

    Milvus 2.3.5 cannot memory-map a string column of zero bytes (milvus#31406, fixed in 2.3.12):
    with ``queryNode.mmapDirPath`` set (the local stack's default), a sealed segment whose page
    URLs were all "" failed to load and was retried forever. Unknown page URLs are stored as a
    marker, which reads back as "".
    """
    with isolated_settings(settings) as s:
        _media, sightings = ensure_media_collections(s)
        rows = [{"sighting_key": i, "phash": bytes(8), "media_sha256": "a" * 64, "canonical_sha256": "a" * 64,
                 "match": "exact", "media_id": f"m:{i}", "source_url": f"https://a.example/{i}.jpg",
                 "page_url": stored_page_url(None), "platform": "example", "posted_at": 0, "scraped_at": i}
                for i in range(1, 11)]
        writer = MilvusWriter(sightings, max_unindexed_rows=None)
        writer.write(rows)
        writer.close(flush=True)  # sealed: loaded from its binlogs, not from the message stream
        sightings.release()
        sightings.load(timeout=60)
        stored = sightings.query("sighting_key >= 0", output_fields=["page_url"], consistency_level="Strong",
                                 timeout=30)
        assert sorted((row["sighting_key"], page_url_from_store(row["page_url"])) for row in stored) == [
            (i, "") for i in range(1, 11)]
