"""MinIO buckets and the Milvus face collection, created idempotently from configuration."""

from __future__ import annotations

import io

import pytest
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, utility

from mimamori.config import BucketConfig
from stores.faces import ensure_face_collection
from stores.milvus import connect
from stores.objects import ensure_bucket, object_client
from tests.conftest import unique

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
