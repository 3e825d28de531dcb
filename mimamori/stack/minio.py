"""MinIO, built from its Go module at a pinned version, with generated credentials."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from mimamori.stack.install import go_binary
from mimamori.stack.process import ManagedProcess, StackError
from mimamori.stack.service import Health, Service, http_health

MODULE = "github.com/minio/minio"


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def ensure_credentials(path: Path) -> dict[str, str]:
    """Generate the root credentials on first start; keep them in a file only we can read (0600)."""
    if path.exists():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    credentials = {"access_key": "mimamori-" + secrets.token_hex(6), "secret_key": secrets.token_urlsafe(32)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(credentials, handle)
    return credentials


class MinioService(Service):
    name = "minio"

    @property
    def binary(self) -> Path:
        return self.settings.stack.cache_dir / "go" / f"minio-{self.settings.stack.minio.version}" / "minio"

    def ports(self) -> dict[str, int]:
        return {
            "S3 API": _split(self.settings.minio.endpoint)[1],
            "console": _split(self.settings.stack.minio.console_address)[1],
        }

    def processes(self) -> list[ManagedProcess]:
        return [self.process("minio")]

    def install(self) -> None:
        go_binary(MODULE, self.settings.stack.minio.version, "minio", self.settings.stack.cache_dir)

    def _launch(self) -> None:
        host, _ = _split(self.settings.minio.endpoint)
        if host not in ("127.0.0.1", "localhost"):
            raise StackError(f"the local stack serves MinIO on loopback only, not {host}")
        assert self.settings.minio.credentials_file is not None
        credentials = ensure_credentials(self.settings.minio.credentials_file)
        data = self.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.processes()[0].start(
            [str(self.binary), "server", str(data), "--quiet",
             "--address", self.settings.minio.endpoint,
             "--console-address", self.settings.stack.minio.console_address],
            env={
                "MINIO_ROOT_USER": credentials["access_key"],
                "MINIO_ROOT_PASSWORD": credentials["secret_key"],
                "MINIO_UPDATE": "off",
                "MINIO_CALLHOME_ENABLE": "off",
                "MINIO_BROWSER_REDIRECT": "off",
            },
            cwd=self.home,
        )

    def health(self) -> Health:
        scheme = "https" if self.settings.minio.secure else "http"
        return http_health(f"{scheme}://{self.settings.minio.endpoint}/minio/health/ready")
