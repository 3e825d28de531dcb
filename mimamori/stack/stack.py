"""``mimamori stack up | down | status | logs``: the local stack as one thing.

``up`` installs what is missing, starts each service that is not running and healthy,
and creates the topics, buckets and collections that the configuration names. Run on
a running stack it changes nothing and returns within seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mimamori.core.config import Settings
from mimamori.stack.kafka import KafkaService
from mimamori.stack.milvus import MilvusService
from mimamori.stack.minio import MinioService
from mimamori.stack.monitoring import ExporterService, PrometheusService
from mimamori.stack.prism import PrismRunner
from mimamori.stack.process import ManagedProcess
from mimamori.stack.rechecks import RechecksService
from mimamori.stack.service import Service


@dataclass
class ComponentStatus:
    name: str
    healthy: bool
    detail: str
    pids: dict[str, int | None]
    ports: dict[str, int]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Stack:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.home = settings.stack.home
        # Start order: Milvus keeps its data in MinIO.
        self.minio = MinioService(settings)
        self.kafka = KafkaService(settings)
        self.milvus = MilvusService(settings)
        self.prism = PrismRunner(settings)
        self.prometheus = PrometheusService(settings)
        self.exporter = ExporterService(settings)
        self.rechecks = RechecksService(settings)  # re-checks of takedown URLs (issue 19)
        # The workbench's API process that scripts/demo starts (`mimamori api`): not a service
        # of the stack (``up`` never starts it), but it needs the stack, so ``down`` ends it.
        self.workbench = ManagedProcess("workbench", self.home / "run", self.home / "logs")

    @property
    def services(self) -> list[Service]:
        return [self.minio, self.kafka, self.milvus, self.exporter, self.rechecks, self.prometheus]

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One `up` or `down` at a time (tests and a user's shell may race)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "stack.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def up(self) -> list[str]:
        """Bring everything up; return the names of the services started now."""
        started: list[str] = []
        with self._lock():
            if self._set_up_already():
                return started
            self.install()
            for service in self.services:
                began = time.monotonic()
                if service.start():
                    started.append(service.name)
                    _say(f"  {service.name}: started in {time.monotonic() - began:.1f} s")
                if service is self.minio:
                    from mimamori.stores.objects import ensure_buckets

                    ensure_buckets(self.settings)  # Milvus needs its bucket before it starts
            self.create_resources()
            (self.home / "resources.key").write_text(self._resources_key())
        return started

    def _resources_key(self) -> str:
        """What the resources were last made for: this configuration, on these very processes
        (a restarted service, say after ``down --purge``, gets them made again)."""
        pids = {name: pid for service in self.services for name, pid in service.pids().items()}
        return hashlib.sha256((self.settings.model_dump_json() + json.dumps(pids, sort_keys=True)).encode()).hexdigest()

    def _set_up_already(self) -> bool:
        """Whether an earlier ``up`` left everything as it is now wanted: every service running
        and healthy, and the resources made for this configuration on these processes. Checked
        first, so that ``up`` on a running stack costs a health check per service and no more."""
        if not self.prism.binary.exists():
            return False
        if not all(service.running() and service.health().healthy for service in self.services):
            return False
        marker = self.home / "resources.key"
        return marker.exists() and marker.read_text() == self._resources_key()

    def install(self) -> None:
        """Install every component at once: the Go builds and the Maven download overlap."""
        installers = [service.install for service in self.services] + [self.prism.install]
        with ThreadPoolExecutor(max_workers=len(installers)) as pool:
            for future in [pool.submit(install) for install in installers]:
                future.result()

    def create_resources(self) -> None:
        """Topics, collections and indexes, as configured (idempotent). Buckets are made in
        ``up`` as soon as MinIO runs, because Milvus needs its own before it starts."""
        from mimamori.stores.faces import ensure_face_collection
        from mimamori.stores.media import ensure_media_collections
        from mimamori.streams.topics import ensure_topics

        ensure_topics(self.settings)
        ensure_face_collection(self.settings)
        ensure_media_collections(self.settings)

    def down(self, purge: bool = False) -> list[str]:
        stopped: list[str] = []
        with self._lock():
            from mimamori.stores.milvus import disconnect

            disconnect(self.settings)
            if self.workbench.stop(timeout_s=15):
                stopped.append(self.workbench.name)
            for service in reversed(self.services):
                if service.stop():
                    stopped.append(service.name)
            if purge:
                for service in self.services:
                    shutil.rmtree(service.home, ignore_errors=True)
                shutil.rmtree(self.home / "logs", ignore_errors=True)
        return stopped

    def status(self) -> list[ComponentStatus]:
        report = []
        for service in self.services:
            pids = service.pids()
            if not all(pids.values()):
                stopped = [name for name, pid in pids.items() if pid is None]
                health_ok = False
                detail = "not running" if len(stopped) == len(pids) else f"not running: {', '.join(stopped)} stopped"
            else:
                health = service.health()
                health_ok, detail = health.healthy, health.detail
            report.append(ComponentStatus(service.name, health_ok, detail, pids, service.ports()))
        prism = self.prism.binary
        report.append(ComponentStatus("prism", prism.exists(),
                                      f"runner binary {prism}" if prism.exists() else "not installed",
                                      {}, {}))
        return report

    def log_files(self, component: str | None = None) -> list[Path]:
        files = []
        for service in self.services:
            if component in (None, service.name):
                files += [p.log_file for p in service.processes()]
        return [f for f in files if f.exists()]
