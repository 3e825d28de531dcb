"""The unit tier is hermetic: no network, no new process, no download (tests/support/hermetic.py).

Every phase of every unit test (its fixtures of any scope, the test, their teardown) runs
with connections and program starts refused; a test that tried fails, naming what it tried,
even if the code under test caught the error. ``scripts/test unit`` adds a network namespace
without any interface up.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from mimamori.core.config import Settings
from tests.integration.samples import Sample, bad_samples
from tests.support.hermetic import HINT, HermeticViolation, hermetic_settings, refuse_network_and_processes
from tests.support.pipeline import MAX_MEDIA_BYTES


def pytest_sessionstart(session: pytest.Session) -> None:
    # matplotlib lists the system's fonts with fc-list on its first import and caches the list in
    # ~/.cache/matplotlib; on a fresh machine the first plotting test would do it, inside the
    # hermetic phases. Build that cache here, before any test runs.
    import matplotlib.font_manager  # noqa: F401


def _hermetic() -> Generator[None, object, object]:
    with refuse_network_and_processes() as tried:
        result = yield
    if tried:
        raise HermeticViolation(f"tried to {'; '.join(tried)}: {HINT}")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _hermetic())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _hermetic())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    return (yield from _hermetic())


@pytest.fixture
def offline_settings(tmp_path: Path) -> Settings:
    """The local profile with every service on a closed port and its files under ``tmp_path``."""
    return hermetic_settings(tmp_path)


@pytest.fixture(scope="session")
def bad_media(testdata: Path) -> list[Sample]:
    """Broken media and events of every kind (tests/integration/samples.py), made once: the bomb takes a second."""
    return bad_samples(testdata, MAX_MEDIA_BYTES)
