"""Prometheus file-based service discovery: a process announces its metrics endpoint in a file.

The local Prometheus reads ``Settings.scrape_targets_dir()`` (``file_sd_configs``); other
deployments discover targets their own way and pass no directory.
"""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path

_registered: set[Path] = set()


def register_scrape_target(targets: Path, job: str, port: int, address: str = "127.0.0.1") -> Path:
    """Tell the local Prometheus about this process's endpoint (file-based service discovery).

    The file is removed when the process exits; the stack removes files of processes that died.
    """
    targets.mkdir(parents=True, exist_ok=True)
    path = targets / f"{job}-{os.getpid()}.json"
    if path in _registered:
        return path
    _registered.add(path)
    document = [{"targets": [f"{address}:{port}"], "labels": {"job": job, "pid": str(os.getpid())}}]
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document))
    temporary.replace(path)  # Prometheus never reads half a file
    atexit.register(lambda: path.unlink(missing_ok=True))
    return path


def forget_dead_targets(targets_dir: Path) -> None:
    """Remove the discovery files of worker processes that are gone (a SIGKILL skips atexit)."""
    for path in targets_dir.glob("*.json"):
        try:
            pid = int(json.loads(path.read_text())[0]["labels"]["pid"])
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except (ValueError, KeyError, IndexError, OSError):
            continue
