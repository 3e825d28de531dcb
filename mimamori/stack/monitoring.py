"""Prometheus (Debian's package) and mimamori's state exporter, for the local stack.

Prometheus comes from Debian's ``prometheus`` package, fetched with ``apt-get download`` and
unpacked into the cache (no root, nothing installed system-wide); ``promtool`` comes with it.
Its configuration is generated from the project's: the pipeline workers and the API announce
themselves through file-based service discovery (``<stack home>/prometheus/targets``), the
exporter and Milvus are static targets, and the alert rules are the repository's
(``docker/prometheus/rules``), the same files the Docker Compose stack mounts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from mimamori.core.config import SOURCE_ROOT, Settings
from mimamori.core.scrape_targets import forget_dead_targets
from mimamori.stack.install import require_tool
from mimamori.stack.process import ManagedProcess, StackError
from mimamori.stack.service import Health, Service, http_health, settings_environment

RULES_DIR = SOURCE_ROOT / "docker" / "prometheus" / "rules"


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def prometheus_binaries(settings: Settings) -> Path:
    """``prometheus`` and ``promtool`` from Debian's package, unpacked once into the cache."""
    version = settings.stack.monitoring.prometheus_version
    dest = settings.stack.cache_dir / f"prometheus-{version}"
    if (dest / "usr" / "bin" / "promtool").exists():
        return dest / "usr" / "bin"
    apt_get = require_tool("apt-get", "download Debian's prometheus package")
    dpkg_deb = require_tool("dpkg-deb", "unpack Debian's prometheus package")
    settings.stack.cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="prometheus-", dir=settings.stack.cache_dir))
    try:
        print(f"  installing Debian's prometheus {version} (apt-get download)", file=sys.stderr, flush=True)
        result = subprocess.run([apt_get, "download", f"prometheus={version}"], cwd=staging, capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise StackError(f"apt-get download prometheus={version} failed:\n{result.stderr[-2000:]}")
        deb = next(staging.glob("prometheus_*.deb"), None)
        if deb is None:
            raise StackError("apt-get download prometheus left no .deb behind")
        subprocess.run([dpkg_deb, "-x", str(deb), str(staging / "root")], check=True, capture_output=True)
        shutil.rmtree(dest, ignore_errors=True)
        (staging / "root").rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest / "usr" / "bin"


def scrape_config(settings: Settings, targets_dir: Path) -> dict:
    monitoring = settings.stack.monitoring

    def discovered(job: str) -> dict:
        return {"job_name": job, "file_sd_configs": [{"files": [str(targets_dir / f"{job}-*.json")]}]}

    return {
        "global": {"scrape_interval": monitoring.scrape_interval, "evaluation_interval": monitoring.scrape_interval},
        "rule_files": [str(RULES_DIR / "*.rules.yml")],
        "scrape_configs": [
            discovered("mimamori-pipeline"),
            discovered("mimamori-api"),
            discovered("mimamori-rechecks"),  # the re-check service (issue 19) announces itself too
            {"job_name": "mimamori-exporter", "static_configs": [{"targets": [monitoring.exporter_address]}]},
            {"job_name": "milvus", "static_configs": [
                {"targets": [f"127.0.0.1:{settings.stack.milvus.health_port}"]}]},
            {"job_name": "prometheus", "static_configs": [{"targets": [monitoring.prometheus_address]}]},
        ],
    }


class PrometheusService(Service):
    name = "prometheus"

    def ports(self) -> dict[str, int]:
        return {"HTTP": _port(self.settings.stack.monitoring.prometheus_address)}

    def processes(self) -> list[ManagedProcess]:
        return [self.process("prometheus")]

    def install(self) -> None:
        prometheus_binaries(self.settings)

    def _launch(self) -> None:
        address = self.settings.stack.monitoring.prometheus_address
        if not address.startswith("127.0.0.1:"):
            raise StackError(f"the local stack serves Prometheus on loopback only, not {address}")
        targets = self.settings.scrape_targets_dir() or self.home / "targets"
        targets.mkdir(parents=True, exist_ok=True)
        forget_dead_targets(targets)
        config = self.home / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(self.settings, targets), sort_keys=False))
        binaries = prometheus_binaries(self.settings)
        self.processes()[0].start(
            [str(binaries / "prometheus"), f"--config.file={config}", f"--storage.tsdb.path={self.home / 'data'}",
             f"--storage.tsdb.retention.time={self.settings.stack.monitoring.retention}",
             f"--web.listen-address={address}", "--web.enable-lifecycle"],
            cwd=self.home)

    def health(self) -> Health:
        return http_health(f"http://{self.settings.stack.monitoring.prometheus_address}/-/ready")


class ExporterService(Service):
    name = "exporter"
    stop_timeout_s = 10.0

    def ports(self) -> dict[str, int]:
        return {"metrics": _port(self.settings.stack.monitoring.exporter_address)}

    def processes(self) -> list[ManagedProcess]:
        return [self.process("exporter")]

    def install(self) -> None:
        return None  # part of mimamori

    def _launch(self) -> None:
        self.processes()[0].start([sys.executable, "-m", "mimamori.exporter"],
                                  env=settings_environment(self.settings, self.home / "settings.yaml"),
                                  cwd=SOURCE_ROOT)  # the exporter reads exactly the stack's settings

    def health(self) -> Health:
        return http_health(f"http://{self.settings.stack.monitoring.exporter_address}/metrics",
                           expect="mimamori_exporter_errors_total", timeout_s=5.0)
