from pathlib import Path

import pytest

from mimamori.core.config import load_settings


def test_local_profile_is_loopback_only():
    settings = load_settings("local")
    assert settings.kafka.bootstrap_servers.startswith("127.0.0.1:")
    assert settings.minio.endpoint.startswith("127.0.0.1:")
    assert settings.milvus.uri.startswith("http://127.0.0.1:")
    assert settings.milvus.index.index_type != "DISKANN"  # the embedded Milvus cannot build it


def test_production_profile_uses_diskann_and_tls():
    settings = load_settings("production")
    assert settings.milvus.index.index_type == "DISKANN"
    assert settings.kafka.security_protocol == "SSL"
    assert settings.minio.secure is True
    assert settings.models.embedder.allow_random_weights is False


def test_environment_overrides_nested_fields(monkeypatch):
    monkeypatch.setenv("MIMAMORI_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    monkeypatch.setenv("MIMAMORI_MILVUS__INDEX__INDEX_TYPE", "IVF_SQ8")
    settings = load_settings("local")
    assert settings.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert settings.milvus.index.index_type == "IVF_SQ8"
    assert settings.milvus.index.metric_type == "IP"  # the rest of the section is kept


def test_site_file_is_layered_over_the_profile(tmp_path: Path):
    site = tmp_path / "site.yaml"
    site.write_text("kafka:\n  topics:\n    media_scraped: {name: other.topic, partitions: 12}\n")
    settings = load_settings("local", site)
    assert settings.kafka.topics.media_scraped.name == "other.topic"
    assert settings.kafka.topics.media_scraped.partitions == 12
    assert settings.kafka.topics.media_dlq.name == "media.dlq"


def test_unknown_profile_and_unknown_keys_are_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown profile"):
        load_settings("staging")
    site = tmp_path / "typo.yaml"
    site.write_text("kafka:\n  bootstrap_server: 127.0.0.1:1\n")
    with pytest.raises(ValueError, match="bootstrap_server"):
        load_settings("local", site)


def test_collection_name_carries_the_model():
    settings = load_settings("local")
    assert settings.face_collection("facenet-vggface2") != settings.face_collection("dlib-resnet")
    assert "dlib_resnet" in settings.face_collection("dlib-resnet")


def test_namespaced_settings_share_no_name_with_the_original():
    settings = load_settings("local")
    other = settings.namespaced("t1234")
    assert {t.name for t in other.kafka.topics.all()}.isdisjoint(t.name for t in settings.kafka.topics.all())
    assert other.kafka.consumer_group != settings.kafka.consumer_group
    assert other.face_collection() != settings.face_collection()
    assert other.milvus.sightings_collection != settings.milvus.sightings_collection
    assert other.minio.buckets.media.name != settings.minio.buckets.media.name
    assert other.minio.buckets.milvus.name == settings.minio.buckets.milvus.name  # fixed when Milvus starts
