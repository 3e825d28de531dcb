"""The local Milvus's milvus.yaml, rendered from settings (no server started)."""

from __future__ import annotations

from pathlib import Path

from mimamori.core.config import load_settings
from mimamori.stack.milvus import COMPONENTS_WITH_IP, MilvusService


def service(tmp_path: Path, monkeypatch, **milvus_stack: str) -> MilvusService:
    monkeypatch.setenv("MIMAMORI_STACK__HOME", str(tmp_path / "stack"))
    monkeypatch.setenv("MIMAMORI_MINIO__CREDENTIALS_FILE", str(tmp_path / "minio.json"))
    for key, value in milvus_stack.items():
        monkeypatch.setenv(f"MIMAMORI_STACK__MILVUS__{key.upper()}", value)
    return MilvusService(load_settings("local"))


def test_every_node_listens_on_loopback_and_segments_seal_full(tmp_path, monkeypatch):
    config = service(tmp_path, monkeypatch).config()
    assert all(config[name]["ip"] == "127.0.0.1" for name in COMPONENTS_WITH_IP)
    assert config["dataCoord"]["segment"]["sealProportion"] == 0.9
    assert config["dataCoord"]["segment"]["maxSize"] == 512  # Milvus's own size is kept
    assert config["dataNode"]["dataSync"]["maxParallelSyncTaskNum"] == 2  # not 6 bursts into MinIO at once
    assert "flowGraph" in config["dataNode"]["dataSync"]  # the template's other settings are kept


def test_mmap_is_on_by_default_and_its_directory_lies_under_the_data_directory(tmp_path, monkeypatch):
    milvus = service(tmp_path, monkeypatch)
    assert milvus.config()["queryNode"]["mmapDirPath"] == str(milvus.data_dir / "mmap")
    assert "mmapDirPath" not in service(tmp_path, monkeypatch, mmap="false").config()["queryNode"]


def test_extra_config_is_merged_last(tmp_path, monkeypatch):
    extra = '{"dataCoord": {"segment": {"sealProportion": 0.5, "maxSize": 1024}}}'
    segment = service(tmp_path, monkeypatch, extra_config=extra).config()["dataCoord"]["segment"]
    assert (segment["sealProportion"], segment["maxSize"]) == (0.5, 1024)
