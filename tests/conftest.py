"""Shared fixtures: the settings, and the real local stack for integration tests.

The stack is brought up once per test session (or a running one is reused) and is
taken down at the end only if this session started it. Tests use unique topic,
bucket and collection names, so they never collide with each other or with data a
developer keeps in the stack.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mimamori.core.config import Settings, load_settings

TESTDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata"


def unique(prefix: str, separator: str = "-") -> str:
    return f"{prefix}{separator}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings("local")


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator:
    """The running local stack (started here if it was not running)."""
    from mimamori.stack.stack import Stack

    stack = Stack(settings)
    started = stack.up()
    yield stack
    from mimamori.streams.producer import close_all

    close_all()
    if started and not os.environ.get("MIMAMORI_KEEP_STACK"):
        stack.down()


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.exists():
        pytest.skip(f"{TESTDATA} is missing (CI always has ../shared/testdata beside the repository)")
    return TESTDATA


def pytest_collection_modifyitems(config, items):
    """Slow tests run only with MIMAMORI_SLOW_TESTS=1 (see the README)."""
    if os.environ.get("MIMAMORI_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set MIMAMORI_SLOW_TESTS=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
