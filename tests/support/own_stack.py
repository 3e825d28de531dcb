"""A local stack of one's own, beside the shared one: its own home directory and every port moved.

Tests that kill services (tests/integration/test_service_crashes.py) must never disturb the
stack other tests share. ``private_settings`` moves every listener the stack opens by ``offset``
(Kafka's broker and controller, MinIO's API and console, Milvus's gRPC and health ports,
Prometheus, the exporter and the re-check service) and puts the data, logs, pidfiles, credentials and the case
database under ``home``. Milvus's inner ports (etcd, its coordinators) live in the private
network namespace each Milvus runs in (``stack.milvus.isolate_network``), so two Milvus never
meet there. The install cache (``stack.cache_dir``) stays shared: nothing is downloaded again.
"""

from __future__ import annotations

import shutil
import urllib.parse
from pathlib import Path

from mimamori.core.config import Settings

# What a private home keeps between runs: the Milvus binaries the pip package unpacks (250 MB).
KEPT = ("milvus/bin",)


def _moved(address: str, offset: int) -> str:
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + offset}"


def _moved_url(url: str, offset: int) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=_moved(parts.netloc, offset)).geturl()


def private_settings(base: Settings, home: Path, offset: int) -> Settings:
    """``base`` with every listener of the stack moved by ``offset`` and all its state under ``home``."""
    s = base.model_copy(deep=True)
    s.stack.home = home
    s.kafka.bootstrap_servers = ",".join(_moved(a, offset) for a in s.kafka.bootstrap_servers.split(","))
    s.stack.kafka.controller_port += offset
    s.minio.endpoint = _moved(s.minio.endpoint, offset)
    s.minio.credentials_file = home / "minio" / "credentials.json"
    s.stack.minio.console_address = _moved(s.stack.minio.console_address, offset)
    s.milvus.uri = _moved_url(s.milvus.uri, offset)
    s.stack.milvus.health_port += offset
    s.milvus.health_url = _moved_url(s.milvus.health_url, offset)
    s.stack.monitoring.prometheus_address = _moved(s.stack.monitoring.prometheus_address, offset)
    s.stack.monitoring.exporter_address = _moved(s.stack.monitoring.exporter_address, offset)
    if s.rechecks.metrics_address:  # else it follows the exporter's address
        s.rechecks.metrics_address = _moved(s.rechecks.metrics_address, offset)
    s.database.url = f"sqlite:///{home / 'cases.sqlite3'}"
    return s


def start(stack) -> None:
    """``stack.up()``; if it fails half-way, what it had started is stopped before the error goes on:
    a fixture whose setup fails never reaches its teardown (a MinIO was left running so)."""
    try:
        stack.up()
    except BaseException:
        stack.down()
        raise


def listening_ports(settings: Settings) -> set[int]:
    """Every host port the stack of these settings listens on."""
    from mimamori.stack.stack import Stack

    return {port for service in Stack(settings).services for port in service.ports().values()}


def wipe(home: Path) -> None:
    """Remove what an earlier run left under ``home`` (data, logs, pidfiles), keeping ``KEPT``."""
    if not home.exists():
        return
    for entry in home.iterdir():
        if entry.is_dir() and any(kept.split("/")[0] == entry.name for kept in KEPT):
            for inner in entry.iterdir():
                if f"{entry.name}/{inner.name}" not in KEPT:
                    shutil.rmtree(inner, ignore_errors=True) if inner.is_dir() else inner.unlink()
        elif entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink()
