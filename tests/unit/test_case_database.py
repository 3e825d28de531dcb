"""The case database on both engines it supports: SQLite (local) and a real PostgreSQL.

PostgreSQL comes from the ``pgserver`` wheel (its own server binaries, listening on a Unix
socket in a temporary folder only), so the migrations, the append-only triggers and the
64-bit face ids are checked on the production engine too.
"""

import datetime as dt
import itertools

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from mimamori.services import audit
from mimamori.services.audit import Actor
from mimamori.services.auth import authenticate, create_api_key, revoke_api_key
from mimamori.services.consent import ConsentRecord
from mimamori.services.watchlist import record_matches
from mimamori.stores.cases import (
    ApiKey,
    AuditEvent,
    Case,
    Consent,
    Match,
    close_database,
    consent_in_force,
    open_database,
    utcnow,
)

NOW = dt.datetime.now(dt.UTC)


HEAD = "0004"
BIGGEST_FACE_ID = 2**63 - 1  # face ids are Milvus INT64 keys


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
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


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cases.sqlite3"
    return request.getfixturevalue("postgres")()


@pytest.fixture
def sessions(database_url):
    return open_database(database_url)


def test_migrations_are_idempotent_and_times_come_back_in_utc(database_url):
    url = database_url
    sessions = open_database(url)
    with sessions.begin() as session:
        session.add(Case(id="c1", display_name="C.", created_by="staff"))
    again = open_database(url)  # upgrading an up-to-date database changes nothing
    with again() as session:
        case = session.get(Case, "c1")
        assert case.created_at.tzinfo is not None and abs((case.created_at - utcnow()).total_seconds()) < 60
        assert session.execute(text("select version_num from alembic_version")).scalar() == HEAD


def test_the_audit_log_is_append_only_in_the_database(sessions):
    audit.record(sessions, Actor("alice", "reviewer"), "search", case_id="c1", result_count=3)
    rewrites = ["update audit_events set actor = 'mallory'", "delete from audit_events"]
    if sessions.kw["bind"].dialect.name == "postgresql":
        rewrites.append("truncate audit_events")
    for statement in rewrites:
        with pytest.raises(DBAPIError, match="append-only"), sessions.begin() as session:
            session.execute(text(statement))
    rows = audit.read(sessions)
    assert [(r.actor, r.action, r.result_count) for r in rows] == [("alice", "search", 3)]


def test_api_keys_are_stored_hashed_and_can_be_revoked(sessions):
    key = create_api_key(sessions, "bob", "reviewer")
    with sessions() as session:
        stored = session.scalars(select(ApiKey)).one()
    assert key not in stored.key_sha256 and len(stored.key_sha256) == 64
    assert authenticate(sessions, key) == Actor("bob", "reviewer")
    assert authenticate(sessions, key + "x") is None and authenticate(sessions, None) is None
    assert revoke_api_key(sessions, "bob") == 1
    assert authenticate(sessions, key) is None
    with pytest.raises(ValueError, match="unknown role"):
        create_api_key(sessions, "eve", "root")


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
    from mimamori.stores.cases import case_threshold

    dlib = Case(id="c", display_name="C.", match_threshold=0.96, threshold_model="dlib-resnet", created_by="s")
    assert case_threshold(dlib, "dlib-resnet", 0.94) == 0.96
    assert case_threshold(dlib, "facenet-vggface2", 0.6) == 0.6  # another model's scale: its default
    legacy = Case(id="l", display_name="L.", match_threshold=0.9, created_by="s")
    assert case_threshold(legacy, "facenet-vggface2", 0.6) == 0.9
    default = Case(id="d", display_name="D.", created_by="s")
    assert case_threshold(default, "dlib-resnet", 0.94) == 0.94


def test_a_match_is_recorded_once_per_case_and_face(sessions):
    with sessions.begin() as session:
        session.add(Case(id="c1", display_name="C.", created_by="staff"))
    face = BIGGEST_FACE_ID
    first = record_matches(sessions, [("c1", face, "a" * 64, 0.97)], "m@v", "stream", {"a" * 64: NOW})
    again = record_matches(sessions, [("c1", face, "a" * 64, 0.98)], "m@v", "stream")
    assert len(first) == 1 and first[0].status == "pending_review" and again == []
    with sessions() as session:
        match = session.scalars(select(Match)).one()
        assert match.scraped_at == NOW and match.face_id == face
    with sessions() as session:
        assert len(audit.read(sessions)) == 0 and not list(session.scalars(select(AuditEvent)))
