"""What every component of the local stack provides to ``mimamori stack``."""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from mimamori.core.config import Settings
from mimamori.core.waiting import wait_until
from mimamori.stack.process import ManagedProcess, StackError, port_in_use


@dataclass
class Health:
    healthy: bool
    detail: str


def http_health(url: str, expect: str | None = None, timeout_s: float = 3.0) -> Health:
    """Healthy when ``url`` answers 200 (and its body contains ``expect``, if given)."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read().decode(errors="replace")
            healthy = response.status == 200 and (expect is None or expect in body)
            return Health(healthy, f"{url} -> {response.status}")
    except Exception as error:
        return Health(False, f"{url}: {error}")


def settings_environment(settings: Settings, site: Path) -> dict[str, str]:
    """Write ``settings`` to ``site`` (mode 0600: it names credential files) and return the
    ``MIMAMORI_CONFIG``/``MIMAMORI_PROFILE`` that make a child process read exactly them."""
    site.parent.mkdir(parents=True, exist_ok=True)
    site.unlink(missing_ok=True)
    fd = os.open(site, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(settings.model_dump(mode="json"), handle)
    return {"MIMAMORI_CONFIG": str(site), "MIMAMORI_PROFILE": settings.profile}


class Service(abc.ABC):
    """A component of the local stack: install it, start it, check it, stop it."""

    name: str
    # How long a graceful stop may take before SIGKILL.
    stop_timeout_s: float = 30.0

    def __init__(self, settings: Settings):
        self.settings = settings
        self.home: Path = settings.stack.home / self.name

    @property
    def data_dir(self) -> Path:
        """What it stores (Kafka's log, MinIO's buckets, Milvus's etcd, message log and mmap files)."""
        return self.home / "data"

    # -- what a service says about itself ---------------------------------------------------
    @abc.abstractmethod
    def ports(self) -> dict[str, int]:
        """The host loopback ports it listens on, by purpose."""

    @abc.abstractmethod
    def processes(self) -> list[ManagedProcess]:
        """Its processes, in start order."""

    @abc.abstractmethod
    def install(self) -> None:
        """Download or build what it runs (cached; fast when already there)."""

    @abc.abstractmethod
    def _launch(self) -> None:
        """Start its processes (the ports are known to be free)."""

    @abc.abstractmethod
    def health(self) -> Health:
        """A real check that it serves requests."""

    def after_start(self) -> None:  # noqa: B027 - optional hook
        """A deeper readiness check after a fresh start (optional)."""

    # -- shared behaviour -------------------------------------------------------------------
    def process(self, name: str) -> ManagedProcess:
        run_dir = self.settings.stack.home / "run"
        return ManagedProcess(name=name, run_dir=run_dir, log_dir=self.settings.stack.home / "logs")

    def running(self) -> bool:
        return all(p.running() for p in self.processes())

    def start(self) -> bool:
        """Start unless running; wait until healthy. True if it was started now."""
        if self.running() and self.health().healthy:
            return False
        self.stop()  # a half-started service (one process of two) is restarted whole
        for purpose, port in self.ports().items():
            if port_in_use("127.0.0.1", port):
                raise StackError(
                    f"port {port} ({self.name} {purpose}) is already in use by another program; "
                    f"stop it or choose another port in the configuration"
                )
        self.home.mkdir(parents=True, exist_ok=True)
        self._launch()

        def ready() -> bool:
            for proc in self.processes():
                if (tail := proc.exited_early()) is not None:
                    raise StackError(f"{self.name}: {proc.name} exited during start; its log ends:\n{tail}")
            return self.health().healthy

        log_files = ", ".join(str(p.log_file) for p in self.processes())
        wait_until(ready, self.settings.stack.start_timeout_s, f"{self.name} (logs: {log_files})")
        self.after_start()
        return True

    def stop(self) -> bool:
        stopped = False
        for proc in reversed(self.processes()):
            stopped |= proc.stop(self.stop_timeout_s)
        return stopped

    def pids(self) -> dict[str, int | None]:
        return {p.name: p.pid() for p in self.processes()}
