"""Shared fixtures: the settings, the real local stack for integration tests, and the tier markers.

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

TESTS = Path(__file__).resolve().parent
TESTDATA = TESTS.parent.parent / "shared" / "testdata"
# The tiers, one folder each: what a test needs says where it lives (pyproject.toml's markers).
TIERS = ("unit", "contract", "integration")


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


@pytest.hookimpl(tryfirst=True)  # before -m selects by these markers
def pytest_collection_modifyitems(config, items):
    """Each test is marked with its tier (its folder); slow tests run only with MIMAMORI_SLOW_TESTS=1."""
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0] if item.path.is_relative_to(TESTS) else None
        if folder in TIERS:
            item.add_marker(folder)
    if os.environ.get("MIMAMORI_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set MIMAMORI_SLOW_TESTS=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
