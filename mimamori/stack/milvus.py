"""Milvus 2.3.5 standalone from the PyPI package ``milvus``, storing its data in our MinIO.

The package ships the server binary (lzma-compressed) and a config template. We write
the config ourselves (loopback ``ip`` for every component, ``common.storageType: minio``)
and run the binary in a network namespace of its own (see ``netns.py``), because it binds
its ports to every interface. A bridge process is the only way in: host 127.0.0.1:19530
and :9091 lead to Milvus; Milvus's 127.0.0.1:<MinIO port> leads to the host's MinIO.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from mimamori.core.waiting import wait_until
from mimamori.stack.minio import ensure_credentials
from mimamori.stack.netns import in_own_network_namespace, network_namespace_supported
from mimamori.stack.process import ManagedProcess, StackError
from mimamori.stack.service import Health, Service, http_health

COMPONENTS_WITH_IP = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode",
                      "dataCoord", "dataNode")
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*(?:\(\w+\))?\s*(?::\s*([^}]*?))?\s*\}\}")


def _deep_update(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _package_dir() -> Path:
    import milvus

    return Path(milvus.__file__).parent


class MilvusService(Service):
    name = "milvus"
    # Milvus 2.3's graceful stop can hang with its proxy retrying a stopped root coordinator.
    # A kill is safe: every write is in its message log (rocksmq, fsynced) before it is acked.
    stop_timeout_s = 10.0

    @property
    def proxy_port(self) -> int:
        port = urllib.parse.urlparse(self.settings.milvus.uri).port
        return port or 19530

    @property
    def minio_port(self) -> int:
        return int(self.settings.minio.endpoint.rpartition(":")[2])

    @property
    def isolated(self) -> bool:
        return self.settings.stack.milvus.isolate_network

    def ports(self) -> dict[str, int]:
        return {"gRPC": self.proxy_port, "health": self.settings.stack.milvus.health_port}

    def processes(self) -> list[ManagedProcess]:
        procs = [self.process("milvus")]
        if self.isolated:
            procs.append(self.process("milvus-bridge"))
        return procs

    @property
    def config_file(self) -> Path:
        """The milvus.yaml the server was started with."""
        return self.home / "configs" / "milvus.yaml"

    def install(self) -> None:
        # The binaries ship in the pip package; they are unpacked at launch.
        _package_dir()

    def config(self) -> dict[str, Any]:
        """The server's milvus.yaml, from the package's template plus our settings."""
        template = (_package_dir() / "data" / "config.yaml.template").read_text()
        data, logs = self.data_dir, self.settings.stack.home / "logs"
        values = {
            "etcd_data_dir": data / "etcd.data",
            "etcd_log_path": logs / "milvus-etcd.log",
            "local_storage_dir": data,
            "rocksmq_data_dir": data / "rocksmq",
            "system_log_path": "",
            "proxy_port": self.proxy_port,
        }
        text = PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(2) or "")), template)
        config = yaml.safe_load(text)
        assert self.settings.minio.credentials_file is not None
        credentials = ensure_credentials(self.settings.minio.credentials_file)
        overrides: dict[str, Any] = {name: {"ip": "127.0.0.1"} for name in COMPONENTS_WITH_IP}
        overrides.update({
            "etcd": {"endpoints": "127.0.0.1:2379"},
            "minio": {
                "address": "127.0.0.1",
                "port": self.minio_port,
                "accessKeyID": credentials["access_key"],
                "secretAccessKey": credentials["secret_key"],
                "useSSL": False,
                "bucketName": self.settings.minio.buckets.milvus.name,
                "rootPath": "files",
            },
            "common": {"storageType": "minio"},
            "log": {"file": {"rootPath": ""}, "level": "warn"},
        })
        overrides["dataCoord"]["segment"] = {"sealProportion": self.settings.stack.milvus.seal_proportion}
        overrides["dataNode"]["dataSync"] = {"maxParallelSyncTaskNum": self.settings.stack.milvus.parallel_syncs}
        if self.settings.stack.milvus.mmap:
            overrides["queryNode"]["mmapDirPath"] = str(data / "mmap")
        _deep_update(config, overrides)
        _deep_update(config, self.settings.stack.milvus.extra_config)
        return config

    def _write_config(self) -> Path:
        path = self.config_file
        config_dir = path.parent
        config_dir.mkdir(parents=True, exist_ok=True)
        # It holds the MinIO secret: readable by us only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(self.config(), handle, sort_keys=False)
        (config_dir / "glog.conf").write_text((_package_dir() / "data" / "glog.conf").read_text())
        return path

    def _launch(self) -> None:
        import milvus

        self._write_config()
        milvus._initialize_data_files(str(self.home))  # unpack the shipped binaries (cached by md5)
        binary = self.home / "bin" / "milvus"
        env = {
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(self.settings.stack.milvus.health_port),
            "MILVUSCONF": str(self.config_file.parent) + "/",
            "MILVUS_RUN_DIR": str(self.home / "run"),
            "LD_LIBRARY_PATH": f"{binary.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        }
        server = self.process("milvus")
        if not self.isolated:
            server.start([str(binary), "run", "standalone"], env=env, cwd=self.home)
            return
        if not network_namespace_supported():
            raise StackError(
                "Milvus binds every interface, so the stack runs it in its own network namespace, "
                "which needs root (or CAP_SYS_ADMIN). Run as root, or set "
                "MIMAMORI_STACK__MILVUS__ISOLATE_NETWORK=false to accept Milvus on all interfaces."
            )
        pid = server.start([sys.executable, "-m", "mimamori.stack.netns", "exec", "--",
                            str(binary), "run", "standalone"], env=env, cwd=self.home)
        wait_until(lambda: in_own_network_namespace(pid), 20, "Milvus to enter its network namespace")
        self.process("milvus-bridge").start([sys.executable, "-m", "mimamori.stack.netns", "bridge", "--pid", str(pid),
                      "--inbound", str(self.proxy_port), str(self.settings.stack.milvus.health_port),
                      "--outbound", str(self.minio_port)])

    def health(self) -> Health:
        return http_health(self.settings.milvus.health_url, expect="OK")

    def after_start(self) -> None:
        """Wait until Milvus really accepts writes: a fresh server answers /healthz before flush works."""
        from mimamori.stores.milvus import wait_until_writable

        wait_until_writable(self.settings, timeout_s=self.settings.stack.start_timeout_s)
