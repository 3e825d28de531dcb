"""The case database: cases and their consent, enrolled photos, matches and their decisions,
staff accounts and sessions, case assignments, API keys, audit log.

SQLAlchemy 2 with Alembic migrations (``stores/migrations``): SQLite by default, PostgreSQL
by URL in production. The schema is only ever changed by a migration; ``open_database``
upgrades to the newest one before it hands out sessions.

No face image and no vector is stored here: photos and crops live in MinIO, vectors in
Milvus, and the audit log holds who did what to which case, never biometric data.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from mimamori.core.errors import UnknownCase

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: mimamori stores UTC times with their zone")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        # SQLite gives naive UTC; PostgreSQL gives the session's zone (psycopg's own tzinfo): both as dt.UTC.
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    pass


def insert_new(session: Session, model: type[Base], values: dict[str, Any], keys: list[str]) -> Any:
    """Insert unless a row with the same ``keys`` exists (idempotent under races, on SQLite and
    PostgreSQL alike): the new row's id, or None when it was there already."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    return session.execute(insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)
                           .returning(model.id)).scalar()


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))  # a pseudonym is enough
    # Similarity above which a face is a match for this case; None: the model's default. It is
    # on the scale of the model it was set for (threshold_model): another model uses its own default.
    match_threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold_model: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    # When the newest of the case's face vectors (enrolled photos, reference media's faces, either
    # model) was acknowledged by Milvus: the watchlist's search sees every write up to it
    # (stores/milvus.seen_writes) instead of waiting for Strong consistency. None: none written
    # since the case was created (migration 0010 gave the cases before it the migration's moment;
    # a restore gives every case the restore's).
    faces_written_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    consents: Mapped[list[Consent]] = relationship(back_populates="case", cascade="all, delete-orphan")
    photos: Mapped[list[EnrolledPhoto]] = relationship(back_populates="case", cascade="all, delete-orphan")
    matches: Mapped[list[Match]] = relationship(back_populates="case", cascade="all, delete-orphan")


# What a match can be: waiting for a reviewer, decided, or waiting for a second opinion.
REVIEW_STATUSES = ("pending_review", "confirmed", "rejected", "unsure")
# What a reviewer decides: the client (non-consensual: goes to takedown), not the client, or
# a second opinion wanted from another reviewer or an admin.
DECISIONS = ("confirmed", "rejected", "unsure")


def get_case(session: Session, case_id: str) -> Case:
    """The case, or ``unknown_case``."""
    case = session.get(Case, case_id)
    if case is None:
        raise UnknownCase("unknown_case", f"no case {case_id}")
    return case


def case_threshold(case: Case, model: str, model_default: float) -> float:
    """The case's own threshold when it was set for ``model`` (or before models were recorded),
    else ``model``'s default: similarities of two models are on different scales."""
    if case.match_threshold is not None and case.threshold_model in (None, model):
        return case.match_threshold
    return model_default


class Consent(Base):
    """Who consented, when, to what, until when, recorded by which staff member."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    given_by: Mapped[str] = mapped_column(String(200))  # the client, or their legal representative
    relationship_to_client: Mapped[str] = mapped_column(String(100))
    given_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    scope: Mapped[list[str]] = mapped_column(JSON)  # e.g. ["search", "watchlist", "takedown"]
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # SHA-256 of the signed consent document, which stays in the team's records system.
    document_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)

    case: Mapped[Case] = relationship(back_populates="consents")


def consent_in_force(consent: Consent, now: dt.datetime, scope: str | tuple[str, ...] | None = None) -> bool:
    """Not expired at ``now`` and, if ``scope`` is given, covering it (a tuple: any one of them)."""
    if consent.expires_at is not None and consent.expires_at <= now:
        return False
    if scope is None:
        return True
    return any(wanted in consent.scope for wanted in ((scope,) if isinstance(scope, str) else scope))


class EnrolledPhoto(Base):
    __tablename__ = "enrolled_photos"
    __table_args__ = (UniqueConstraint("case_id", "sha256", "model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    object_key: Mapped[str] = mapped_column(String(300))  # the photo in the references bucket
    crop_key: Mapped[str] = mapped_column(String(300))  # its aligned face crop
    face_id: Mapped[int] = mapped_column(BigInteger)  # primary key of the vector in Milvus (INT64)
    model_version: Mapped[str] = mapped_column(String(128))
    enrolled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    enrolled_by: Mapped[str] = mapped_column(String(200))

    case: Mapped[Case] = relationship(back_populates="photos")


class Match(Base):
    """An indexed face that looks like a case's client, waiting for a reviewer."""

    __tablename__ = "matches"
    __table_args__ = (UniqueConstraint("case_id", "face_id"), Index("ix_matches_case_status", "case_id", "status"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    face_id: Mapped[int] = mapped_column(BigInteger)  # in the face collection (INT64)
    media_sha256: Mapped[str] = mapped_column(String(64), index=True)
    model_version: Mapped[str] = mapped_column(String(128))
    similarity: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(20))  # "stream" or "retro" (found at enrolment)
    status: Mapped[str] = mapped_column(String(20), default="pending_review")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When the media event that brought this face was scraped (for time-to-match).
    scraped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reviewed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # A re-upload of the same media is not a new match: its sightings (in Milvus, by media) are
    # listed with the match, and the latest one's scrape time is kept here.
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)  # the latest decision's note
    # An exclusive claim: the reviewer who opened it in the workbench, until when (then it expires).
    claimed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The media's perceptual hash (16 hex digits), for near-duplicate clusters in the queue.
    media_phash: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # The case's per-case head (issue 20, stores/case_models.py): its score of this face (the base
    # ``similarity`` above stays as evidence) and the version that scored it; null without one.
    case_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    case_model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Issue 20: the evidence (services/match_signals.Decision.evidence: which signals fired, their
    # scores; null on older matches, which are face matches) and, for a match found by an image hash
    # alone (no face: face_id is its PDQ row key), the frame thumbnail it shows (crops bucket).
    signals: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    image_key: Mapped[str | None] = mapped_column(String(300), nullable=True)

    case: Mapped[Case] = relationship(back_populates="matches")
    decisions: Mapped[list[MatchDecision]] = relationship(back_populates="match", cascade="all, delete-orphan",
                                                          passive_deletes=True)


class MatchDecision(Base):
    """One reviewer decision with its note: never edited (database trigger), gone with the case."""

    __tablename__ = "match_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    match_id: Mapped[int] = mapped_column(ForeignKey("matches.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    decision: Mapped[str] = mapped_column(String(20))  # one of DECISIONS, or pending_review (reopened)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    bulk: Mapped[bool] = mapped_column(Boolean, default=False)  # decided with its whole cluster
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    match: Mapped[Match] = relationship(back_populates="decisions")


class User(Base):
    """A staff member who signs in to the workbench. Machines use API keys.

    ``password_hash`` is argon2id; ``totp_secret`` the base32 TOTP secret (RFC 6238), confirmed
    by a first valid code; both are empty until the user follows their one-time invitation,
    whose SHA-256 alone is kept. ``last_totp_step`` refuses a code used twice.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))  # admin, reviewer or auditor
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    totp_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    last_totp_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    invite_sha256: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    invite_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)  # None: the organisation's
    blur_radius: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: the organisation's
    greyscale: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # None: the organisation's
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))

    sessions: Mapped[list[WebSession]] = relationship(back_populates="user", cascade="all, delete-orphan",
                                                      passive_deletes=True)


class WebSession(Base):
    """A signed-in browser: the cookie's token is random, only its SHA-256 is stored.

    ``second_factor`` is false between the password and the TOTP code: such a session may only
    submit the code. ``review_started_at`` is when continuous review began (break reminder).
    """

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    second_factor: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    review_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    user: Mapped[User] = relationship(back_populates="sessions")


class LoginAttempt(Base):
    """One sign-in attempt (password or code), for throttling by username and by client."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_username_at", "username", "at"),
                      Index("ix_login_attempts_client_at", "client", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(200))
    client: Mapped[str] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)


class CaseAssignment(Base):
    """A staff member (user or API key name) who works on a case: reviewers see only these."""

    __tablename__ = "case_assignments"

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    username: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
    assigned_by: Mapped[str] = mapped_column(String(200))
    assigned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OrganisationSetting(Base):
    """One organisation-wide default (blur radius, greyscale, claim minutes, break minutes, language)."""

    __tablename__ = "organisation_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    changed_by: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    """An API key: only its SHA-256 is stored (keys are 256-bit random, so no slow hash is needed)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))  # the staff member or service it belongs to
    role: Mapped[str] = mapped_column(String(20))  # admin, reviewer or auditor
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AliasChange(Base):
    """Which face collection the search alias pointed to, and since when (for rollback)."""

    __tablename__ = "alias_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alias: Mapped[str] = mapped_column(String(200), index=True)
    collection: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))


class AuditEvent(Base):
    """Append-only (database triggers refuse updates and deletes). Never images or vectors."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(50))  # search, enroll, view, export, withdraw, ...
    case_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)  # no FK: outlives the case
    target: Mapped[str | None] = mapped_column(String(300), nullable=True)
    result_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outcome: Mapped[str] = mapped_column(String(20), default="ok")  # ok, denied, rejected
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def _sqlite_pragmas(engine: Engine) -> None:
    """Foreign keys on, and WAL so the API and pipeline workers can share one SQLite file."""
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _on(connection, _record) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database to ``revision``, the newest migration by default (idempotent)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


_open_lock = threading.Lock()
_opened: dict[str, sessionmaker] = {}


def open_database(url: str) -> sessionmaker:
    """The session factory of ``url``, migrated to the newest schema (once per process and URL).

    Serialised: Alembic's command API keeps module-global state, and a runner may set up
    several DoFns (each opening the database) on threads of one worker at once.
    """
    with _open_lock:
        if url not in _opened:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, future=True)
            _sqlite_pragmas(engine)
            migrate(engine)
            _opened[url] = sessionmaker(engine, expire_on_commit=False)
        return _opened[url]


def close_database(url: str) -> None:
    """Close the pooled connections of ``url`` and forget it (a test stopping its server)."""
    with _open_lock:
        sessions = _opened.pop(url, None)
    if sessions is not None:
        sessions.kw["bind"].dispose()
