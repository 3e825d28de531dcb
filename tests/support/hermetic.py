"""What keeps the unit tier hermetic: no network, no process, no stack behind it.

``refuse_network_and_processes`` replaces the calls a test would reach the outside through
(a socket's ``connect`` to anything but a Unix socket, and every way of starting a program)
with ones that fail with a clear message and remember what was tried, so that even code which
swallows the error cannot hide it. ``scripts/test unit`` also runs the tier in a network
namespace of its own, where not even loopback is up: what the patches cannot see (gRPC's C
core) finds nothing either. ``hermetic_settings`` points every endpoint at a closed port, so
a plain ``pytest tests/unit`` never touches the local stack that other people use.
"""

from __future__ import annotations

import _posixsubprocess
import contextlib
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mimamori.core.config import Settings, load_settings

CLOSED_PORT = 1  # tcpmux: nothing listens there
HINT = "unit tests are hermetic; a test that needs this belongs in tests/contract or tests/integration"


class HermeticViolation(AssertionError):
    """A unit test tried to reach the network or start a program."""


def _refuse(tried: list[str], detail: str) -> None:
    tried.append(detail)
    raise HermeticViolation(f"{detail}: {HINT}")


def _guarded_connect(original: Callable[..., Any], tried: list[str]) -> Callable[..., Any]:
    def connect(sock: socket.socket, address: Any) -> Any:
        if sock.family != socket.AF_UNIX:
            _refuse(tried, f"connect to {address!r}")
        return original(sock, address)

    return connect


def _refused_start(name: str, tried: list[str]) -> Callable[..., Any]:
    def start(*args: Any, **_kwargs: Any) -> Any:
        _refuse(tried, f"{name}({args[0]!r}{', ...' if len(args) > 1 else ''})" if args else f"{name}()")

    return start


@contextlib.contextmanager
def refuse_network_and_processes() -> Iterator[list[str]]:
    """Within the block, network connections and new processes fail; yields what was tried."""
    tried: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        for method in ("connect", "connect_ex"):
            patch.setattr(socket.socket, method, _guarded_connect(getattr(socket.socket, method), tried))
        # subprocess (by fork_exec or posix_spawn), multiprocessing (by fork_exec), and os itself.
        patch.setattr(subprocess.Popen, "_execute_child",
                      lambda popen, args, *_rest: _refuse(tried, f"start the program {args!r}"))
        patch.setattr(_posixsubprocess, "fork_exec", _refused_start("start a program", tried))
        for name in ("system", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve"):
            patch.setattr(os, name, _refused_start(f"call os.{name}", tried))
        yield tried


def hermetic_settings(directory: Path) -> Settings:
    """The local profile with every service on a closed port, and files under ``directory``."""
    settings = load_settings("local")
    closed = f"127.0.0.1:{CLOSED_PORT}"
    settings.kafka.bootstrap_servers = closed
    settings.minio.endpoint = closed
    settings.milvus.uri = f"http://{closed}"
    settings.milvus.health_url = f"http://{closed}/healthz"
    settings.stack.home = directory / "stack"
    settings.database.url = f"sqlite:///{directory / 'cases.sqlite3'}"
    return settings
