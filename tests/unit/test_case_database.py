"""The case database on SQLite (local), and the consent and threshold rules it applies.

The engine checks (migrations, append-only audit log, API keys, unique matches) are shared
with tests/contract/test_case_database_postgres.py, which runs them on a real PostgreSQL.
"""

import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

from mimamori.services.consent import ConsentRecord
from mimamori.stores.cases import Case, Consent, case_threshold, consent_in_force
from tests.support.case_database import CaseDatabaseChecks

NOW = dt.datetime.now(dt.UTC)


class TestOnSQLite(CaseDatabaseChecks):
    @pytest.fixture
    def database_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/cases.sqlite3"


def consent(**changes) -> dict:
    record = {"given_by": "client", "given_at": (NOW - dt.timedelta(days=2)).isoformat(),
              "scope": ["search", "watchlist"], "expires_at": (NOW + dt.timedelta(days=30)).isoformat(),
              "recorded_by": "staff"}
    record.update(changes)
    return record


@pytest.mark.parametrize("changes, problem", [
    ({"scope": []}, "scope"),
    ({"scope": ["sell"]}, "scope"),
    ({"given_at": (NOW + dt.timedelta(days=2)).isoformat()}, "future"),
    ({"expires_at": (NOW - dt.timedelta(days=3)).isoformat()}, "not after"),
    ({"given_at": "2026-01-01T10:00:00"}, "time zone"),
    ({"recorded_by": ""}, "recorded_by"),
    ({"surprise": 1}, "surprise"),
])
def test_a_consent_record_must_be_complete_and_coherent(changes, problem):
    with pytest.raises(ValidationError, match=problem):
        ConsentRecord.model_validate(consent(**changes))


def test_consent_in_force_depends_on_expiry_and_scope():
    record = Consent(case_id="c", given_by="c", relationship_to_client="self", given_at=NOW,
                     scope=["search"], expires_at=NOW + dt.timedelta(days=1), recorded_by="s")
    assert consent_in_force(record, NOW) and consent_in_force(record, NOW, "search")
    assert not consent_in_force(record, NOW, "watchlist")
    assert consent_in_force(record, NOW, ("watchlist", "search")) and not consent_in_force(record, NOW, ("takedown",))
    assert not consent_in_force(record, NOW + dt.timedelta(days=2))


def test_a_case_threshold_applies_to_the_model_it_was_set_for():
    dlib = Case(id="c", display_name="C.", match_threshold=0.96, threshold_model="dlib-resnet", created_by="s")
    assert case_threshold(dlib, "dlib-resnet", 0.94) == 0.96
    assert case_threshold(dlib, "facenet-vggface2", 0.6) == 0.6  # another model's scale: its default
    legacy = Case(id="l", display_name="L.", match_threshold=0.9, created_by="s")
    assert case_threshold(legacy, "facenet-vggface2", 0.6) == 0.9
    default = Case(id="d", display_name="D.", created_by="s")
    assert case_threshold(default, "dlib-resnet", 0.94) == 0.94
