"""The case database on a real PostgreSQL: migrations, append-only triggers, 64-bit face ids.

PostgreSQL comes from the ``pgserver`` wheel (its own server binaries, listening on a Unix
socket in a temporary folder only), so the production engine is checked without the stack.
The same checks run on SQLite in tests/unit/test_case_database.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from mimamori.stores.cases import close_database
from tests.support.case_database import CaseDatabaseChecks


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """A PostgreSQL server for the module; calling the fixture's value makes a fresh database."""
    pgserver = pytest.importorskip("pgserver", reason="pgserver is a test dependency (pip install -e .[dev])")
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    numbers, urls = itertools.count(), []

    def new_database() -> str:
        name = f"cases_{next(numbers)}"
        server.psql(f"CREATE DATABASE {name};")
        urls.append(server.get_uri(name).replace("postgresql://", "postgresql+psycopg://", 1))
        return urls[-1]

    yield new_database
    for url in urls:
        close_database(url)
    server.cleanup()


class TestOnPostgreSQL(CaseDatabaseChecks):
    @pytest.fixture
    def database_url(self, postgres: Callable[[], str]) -> str:
        return postgres()
