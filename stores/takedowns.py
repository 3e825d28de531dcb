"""Takedowns: one record per URL to have removed, its states, re-checks, notices and the host directory.

A takedown is created when a reviewer confirms a match (one per page URL the media was seen on)
or by hand for a URL staff found elsewhere. Its ``state`` moves through ``TRANSITIONS`` only, and
the database itself holds it to that (triggers on SQLite and PostgreSQL generated from the one
table below by ``trigger_statements``): a takedown starts as ``draft``; its state changes only
together with a transition row whose (from, to) is allowed and whose ``from`` is the current
state; ``removed`` needs evidence (a re-check that found the content gone, or a reviewer's
statement in the note). Transitions, checks and notices are append-only; the one update allowed
is the withdrawal's scrub, which empties what could point to the client (notes, evidence,
bodies) and keeps what the reports count.

Never an image: media are referred to by SHA-256 and perceptual hashes (pHash; PDQ of issue 20).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mimamori.stores.cases import Base, UTCDateTime, utcnow

STATES = ("draft", "sent", "acknowledged", "removed", "refused", "no_response", "escalated", "reappeared",
          "closed")
# The one definition of the allowed transitions: the services check it, the triggers are made of it.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("sent", "removed", "closed"),
    "sent": ("acknowledged", "removed", "refused", "no_response", "closed"),
    "acknowledged": ("removed", "refused", "no_response", "closed"),
    "refused": ("escalated", "removed", "closed"),
    "no_response": ("escalated", "removed", "closed"),
    "escalated": ("acknowledged", "removed", "refused", "no_response", "closed"),
    "removed": ("reappeared", "closed"),
    "reappeared": ("sent", "escalated", "removed", "closed"),
    "closed": ("draft",),  # reopened (the services refuse it for a withdrawn case)
}
OPEN_STATES = tuple(s for s in STATES if s not in ("removed", "closed"))
# Waiting for staff: a notice to send, a URL that came back, a refusal or silence to escalate.
NEEDS_ACTION = ("draft", "reappeared", "refused", "no_response")
RECHECKED_STATES = tuple(s for s in STATES if s != "closed")
# What a re-check found (the re-check service's outcomes); gone evidence for "removed".
CHECK_OUTCOMES = ("gone", "still_up", "changed", "dns_failure", "error")
GONE_OUTCOMES = ("gone", "dns_failure")
CHANNELS = ("email", "web_form")
NOTICE_METHODS = ("smtp", "eml", "web_form")


def allowed(from_state: str, to_state: str) -> bool:
    return to_state in TRANSITIONS.get(from_state, ())


class Host(Base):
    """One entry of the host directory: who to ask, how, in which language, and what next."""

    __tablename__ = "takedown_hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)  # a slug: "example-tube"
    operator: Mapped[str] = mapped_column(String(200))
    domains: Mapped[list[str]] = mapped_column(JSON)  # "example.com" matches it and its subdomains
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)  # of the servers (ISO 3166-1)
    abuse_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    abuse_form_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    channel: Mapped[str] = mapped_column(String(20))  # email or web_form
    language: Mapped[str] = mapped_column(String(8))  # of the notices: en, ja
    legal_basis: Mapped[str | None] = mapped_column(Text, nullable=True)
    expected_response_days: Mapped[int] = mapped_column(Integer)
    recheck_hours: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: the configured default
    removal_rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # how its "removed" page looks
    escalation: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # the ladder, in order
    verified: Mapped[bool] = mapped_column(Boolean, default=False)  # the organisation checked the contact
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200))


class Takedown(Base):
    """One URL to have removed, of one case (None once the case is withdrawn)."""

    __tablename__ = "takedowns"
    __table_args__ = (
        UniqueConstraint("case_id", "page_url", "media_sha256"),
        CheckConstraint("case_id IS NULL OR (page_url IS NOT NULL AND media_sha256 IS NOT NULL)",
                        name="ck_takedowns_identity"),
        Index("ix_takedowns_state_next_check", "state", "next_check_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"), nullable=True,
                                                index=True)
    match_id: Mapped[int | None] = mapped_column(ForeignKey("matches.id", ondelete="SET NULL"), nullable=True,
                                                 index=True)
    page_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    media_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    # "" when staff created it without the media ("not known"), so (case, page) stays unique.
    media_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    media_phash: Mapped[str | None] = mapped_column(String(16), nullable=True)
    media_pdq: Mapped[str | None] = mapped_column(String(64), nullable=True)  # issue 20's PDQ, 256 bits in hex
    host_key: Mapped[str] = mapped_column(String(300), index=True)  # a directory key or "unknown:<domain>"
    registrable_domain: Mapped[str | None] = mapped_column(String(253), nullable=True)
    platform: Mapped[str | None] = mapped_column(String(100), nullable=True)
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    state: Mapped[str] = mapped_column(String(20), default="draft")
    escalation_step: Mapped[int] = mapped_column(Integer, default=0)  # ladder steps taken
    dns_failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive
    # When the content was found there (the sighting's scrape, the match, or what staff said).
    found_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_check_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    next_escalation_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
    first_sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # the first removal
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class TakedownCheck(Base):
    """One re-check of a takedown's URL, by the id the re-check service gave it (idempotent)."""

    __tablename__ = "takedown_checks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    takedown_id: Mapped[int] = mapped_column(ForeignKey("takedowns.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    checked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Notice(Base):
    """A notice as it was sent (or downloaded, or typed into a web form) to one host."""

    __tablename__ = "takedown_notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host_key: Mapped[str] = mapped_column(String(300), index=True)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the escalation step; None: the host
    recipient: Mapped[str | None] = mapped_column(String(2000), nullable=True)  # an address or a form URL
    channel: Mapped[str] = mapped_column(String(20))
    method: Mapped[str] = mapped_column(String(20))  # smtp, eml, web_form
    language: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str | None] = mapped_column(Text, nullable=True)  # None once redacted
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    body_sha256: Mapped[str] = mapped_column(String(64))  # of the body as sent: kept after redaction
    message_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    sent_by: Mapped[str] = mapped_column(String(200))
    redacted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class NoticeItem(Base):
    """Which takedowns a notice asked for."""

    __tablename__ = "takedown_notice_items"

    notice_id: Mapped[int] = mapped_column(ForeignKey("takedown_notices.id"), primary_key=True)
    takedown_id: Mapped[int] = mapped_column(ForeignKey("takedowns.id"), primary_key=True, index=True)


class TakedownTransition(Base):
    """One change of a takedown's state: who, when, why, on what evidence. Append-only."""

    __tablename__ = "takedown_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    takedown_id: Mapped[int] = mapped_column(ForeignKey("takedowns.id"), index=True)
    from_state: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    check_id: Mapped[str | None] = mapped_column(ForeignKey("takedown_checks.id"), nullable=True)
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("takedown_notices.id"), nullable=True)


# -- the database's own enforcement ----------------------------------------------------------------
# Columns the withdrawal may empty (set to NULL), per append-only table; every other column stays.
SCRUBBED = {
    "takedown_transitions": ("note", "evidence"),
    "takedown_checks": ("detail",),
    "takedown_notices": ("subject", "body", "recipient", "message_id"),
}
COLUMNS = {
    "takedown_transitions": ("id", "takedown_id", "from_state", "to_state", "actor", "role", "at", "note",
                             "evidence", "check_id", "notice_id"),
    "takedown_checks": ("id", "takedown_id", "outcome", "detail", "checked_at", "recorded_at"),
    "takedown_notices": ("id", "host_key", "step", "recipient", "channel", "method", "language", "subject", "body",
                         "body_sha256", "message_id", "sent_at", "sent_by", "redacted_at"),
}
SET_ONCE = {"takedown_notices": ("redacted_at",)}  # may go from NULL to a time, once


def _pairs() -> str:
    return ", ".join(f"'{a}>{b}'" for a, targets in TRANSITIONS.items() for b in targets)


def _same(column: str, dialect: str) -> str:
    if dialect == "postgresql":  # json has no equality: compare the text
        return f"NEW.{column}::text IS NOT DISTINCT FROM OLD.{column}::text"
    return f"NEW.{column} IS OLD.{column}"


def _only_scrubbed(table: str, dialect: str) -> str:
    """The condition of an allowed update: scrubbed columns unchanged or NULL, set-once ones set once, rest same."""
    parts = []
    for column in COLUMNS[table]:
        if column in SCRUBBED[table]:
            parts.append(f"({_same(column, dialect)} OR NEW.{column} IS NULL)")
        elif column in SET_ONCE.get(table, ()):
            parts.append(f"({_same(column, dialect)} OR OLD.{column} IS NULL)")
        else:
            parts.append(_same(column, dialect))
    return " AND ".join(parts)


# Messages of the triggers (no apostrophes: they are SQL string literals).
ILLEGAL = "illegal takedown transition"
NO_EVIDENCE = "a takedown is removed only on evidence: a re-check that found it gone, or a statement of a reviewer"
NOT_CURRENT = "a transition starts from the current state of the takedown"
UNRECORDED = "the state of a takedown changes only by a recorded transition"
NOT_DRAFT = "a takedown starts as draft"


def _latest_matches(dialect: str) -> str:
    return ("EXISTS (SELECT 1 FROM takedown_transitions t WHERE t.id = (SELECT max(id) FROM takedown_transitions "
            "WHERE takedown_id = NEW.id) AND t.from_state = OLD.state AND t.to_state = NEW.state)")


def _gone_check() -> str:
    outcomes = ", ".join(f"'{o}'" for o in GONE_OUTCOMES)
    return (f"EXISTS (SELECT 1 FROM takedown_checks c WHERE c.id = NEW.check_id AND c.takedown_id = NEW.takedown_id "
            f"AND c.outcome IN ({outcomes}))")


def trigger_statements(dialect: str) -> list[str]:
    """The triggers that hold the takedown tables to the state machine and append-only rules.

    Made of ``TRANSITIONS``: a change of it needs a migration that drops these (``drop_statements``)
    and creates them again.
    """
    if dialect == "sqlite":
        return _sqlite_triggers(_pairs())
    if dialect == "postgresql":
        return _postgresql_triggers(_pairs())
    return []


def _sqlite_triggers(pairs: str) -> list[str]:
    blank_note = "(NEW.note IS NULL OR trim(NEW.note) = '')"
    statements = [
        f"""CREATE TRIGGER takedowns_start_draft BEFORE INSERT ON takedowns WHEN NEW.state <> 'draft'
            BEGIN SELECT RAISE(ABORT, '{NOT_DRAFT}'); END""",
        f"""CREATE TRIGGER takedowns_state_recorded BEFORE UPDATE OF state ON takedowns
            WHEN NEW.state IS NOT OLD.state AND NOT {_latest_matches("sqlite")}
            BEGIN SELECT RAISE(ABORT, '{UNRECORDED}'); END""",
        f"""CREATE TRIGGER takedown_transitions_allowed BEFORE INSERT ON takedown_transitions
            WHEN (NEW.from_state || '>' || NEW.to_state) NOT IN ({pairs})
            BEGIN SELECT RAISE(ABORT, '{ILLEGAL}'); END""",
        f"""CREATE TRIGGER takedown_transitions_current BEFORE INSERT ON takedown_transitions
            WHEN NEW.from_state IS NOT (SELECT state FROM takedowns WHERE id = NEW.takedown_id)
            BEGIN SELECT RAISE(ABORT, '{NOT_CURRENT}'); END""",
        f"""CREATE TRIGGER takedown_transitions_evidence BEFORE INSERT ON takedown_transitions
            WHEN NEW.to_state = 'removed' AND ((NEW.check_id IS NULL AND {blank_note})
                 OR (NEW.check_id IS NOT NULL AND NOT {_gone_check()}))
            BEGIN SELECT RAISE(ABORT, '{NO_EVIDENCE}'); END""",
    ]
    for table in SCRUBBED:
        statements += [
            f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
                WHEN NOT ({_only_scrubbed(table, "sqlite")})
                BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END""",
            f"""CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
                BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END""",
        ]
    return statements


def _postgresql_triggers(pairs: str) -> list[str]:
    blank_note = "coalesce(btrim(NEW.note), '') = ''"
    statements = [
        f"""CREATE FUNCTION takedowns_state_check() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
              IF TG_OP = 'INSERT' THEN
                IF NEW.state <> 'draft' THEN RAISE EXCEPTION '{NOT_DRAFT}'; END IF;
              ELSIF NEW.state IS DISTINCT FROM OLD.state AND NOT {_latest_matches("postgresql")} THEN
                RAISE EXCEPTION '{UNRECORDED}';
              END IF;
              RETURN NEW; END $$""",
        """CREATE TRIGGER takedowns_state_check BEFORE INSERT OR UPDATE ON takedowns
           FOR EACH ROW EXECUTE FUNCTION takedowns_state_check()""",
        f"""CREATE FUNCTION takedown_transitions_check() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
              IF (NEW.from_state || '>' || NEW.to_state) NOT IN ({pairs}) THEN
                RAISE EXCEPTION '{ILLEGAL} % -> %', NEW.from_state, NEW.to_state;
              END IF;
              IF NEW.from_state IS DISTINCT FROM (SELECT state FROM takedowns WHERE id = NEW.takedown_id) THEN
                RAISE EXCEPTION '{NOT_CURRENT}';
              END IF;
              IF NEW.to_state = 'removed' AND ((NEW.check_id IS NULL AND {blank_note})
                  OR (NEW.check_id IS NOT NULL AND NOT {_gone_check()})) THEN
                RAISE EXCEPTION '{NO_EVIDENCE}';
              END IF;
              RETURN NEW; END $$""",
        """CREATE TRIGGER takedown_transitions_check BEFORE INSERT ON takedown_transitions
           FOR EACH ROW EXECUTE FUNCTION takedown_transitions_check()""",
    ]
    for table in SCRUBBED:
        statements += [
            f"""CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                  IF TG_OP <> 'UPDATE' OR NOT ({_only_scrubbed(table, "postgresql")}) THEN
                    RAISE EXCEPTION '{table} is append-only';
                  END IF;
                  RETURN NEW; END $$""",
            f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION {table}_append_only()""",
            f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()""",
        ]
    return statements


def drop_statements(dialect: str) -> list[str]:
    """Undo ``trigger_statements`` (for a downgrade, or a migration that changes TRANSITIONS)."""
    if dialect == "sqlite":
        names = ["takedowns_start_draft", "takedowns_state_recorded", "takedown_transitions_allowed",
                 "takedown_transitions_current", "takedown_transitions_evidence"]
        names += [f"{table}_no_{verb}" for table in SCRUBBED for verb in ("update", "delete")]
        return [f"DROP TRIGGER IF EXISTS {name}" for name in names]
    if dialect != "postgresql":
        return []
    statements = ["DROP TRIGGER IF EXISTS takedowns_state_check ON takedowns",
                  "DROP FUNCTION IF EXISTS takedowns_state_check()",
                  "DROP TRIGGER IF EXISTS takedown_transitions_check ON takedown_transitions",
                  "DROP FUNCTION IF EXISTS takedown_transitions_check()"]
    for table in SCRUBBED:
        statements += [f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
                       f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
                       f"DROP FUNCTION IF EXISTS {table}_append_only()"]
    return statements
