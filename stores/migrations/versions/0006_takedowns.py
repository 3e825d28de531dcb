"""takedowns: one record per URL to have removed, its transitions, re-checks, notices, the host directory

- ``takedown_hosts``: the host directory (domain patterns, operator, server country, abuse
  contact, channel, language, legal basis, expected response, re-check interval, removal-page
  rules, escalation ladder, whether the organisation verified the contact).
- ``takedowns``: one per (case, page URL, media); state, escalation step, next re-check and
  escalation times. The case and match links become NULL when they are deleted (withdrawal keeps
  the counts the reports need).
- ``takedown_checks``: each re-check by the id the re-check service gave it (idempotent).
- ``takedown_transitions``: every change of state with actor, time, note and evidence.
- ``takedown_notices`` / ``takedown_notice_items``: each notice as sent, and the takedowns it lists.

Triggers (SQLite and PostgreSQL, generated from ``stores.takedowns.TRANSITIONS``): the state
machine, evidence for "removed", append-only transitions, checks and notices.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mimamori.stores.takedowns import drop_statements, trigger_statements

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "takedown_hosts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("operator", sa.String(length=200), nullable=False),
        sa.Column("domains", sa.JSON(), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("abuse_email", sa.String(length=320), nullable=True),
        sa.Column("abuse_form_url", sa.String(length=2000), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=True),
        sa.Column("expected_response_days", sa.Integer(), nullable=False),
        sa.Column("recheck_hours", sa.Integer(), nullable=True),
        sa.Column("removal_rules", sa.JSON(), nullable=False),
        sa.Column("escalation", sa.JSON(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        _time("updated_at"),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_table(
        "takedowns",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=True),
        sa.Column("match_id", sa.Integer(), nullable=True),
        sa.Column("page_url", sa.String(length=2048), nullable=True),
        sa.Column("media_url", sa.String(length=2048), nullable=True),
        sa.Column("media_sha256", sa.String(length=64), nullable=True),
        sa.Column("media_phash", sa.String(length=16), nullable=True),
        sa.Column("media_pdq", sa.String(length=64), nullable=True),
        sa.Column("host_key", sa.String(length=300), nullable=False),
        sa.Column("registrable_domain", sa.String(length=253), nullable=True),
        sa.Column("platform", sa.String(length=100), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("escalation_step", sa.Integer(), nullable=False),
        sa.Column("dns_failures", sa.Integer(), nullable=False),
        _time("found_at", True),
        _time("created_at"),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        _time("updated_at"),
        _time("next_check_at", True),
        _time("next_escalation_at", True),
        _time("first_sent_at", True),
        _time("removed_at", True),
        _time("withdrawn_at", True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["match_id"], ["matches.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "page_url", "media_sha256"),
        sa.CheckConstraint("case_id IS NULL OR (page_url IS NOT NULL AND media_sha256 IS NOT NULL)",
                           name="ck_takedowns_identity"),
    )
    op.create_index("ix_takedowns_case_id", "takedowns", ["case_id"])
    op.create_index("ix_takedowns_match_id", "takedowns", ["match_id"])
    op.create_index("ix_takedowns_host_key", "takedowns", ["host_key"])
    op.create_index("ix_takedowns_next_escalation_at", "takedowns", ["next_escalation_at"])
    op.create_index("ix_takedowns_state_next_check", "takedowns", ["state", "next_check_at"])
    op.create_table(
        "takedown_checks",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("takedown_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        _time("checked_at"),
        _time("recorded_at"),
        sa.ForeignKeyConstraint(["takedown_id"], ["takedowns.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_takedown_checks_takedown_id", "takedown_checks", ["takedown_id"])
    op.create_table(
        "takedown_notices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("host_key", sa.String(length=300), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.String(length=2000), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=300), nullable=True),
        _time("sent_at"),
        sa.Column("sent_by", sa.String(length=200), nullable=False),
        _time("redacted_at", True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_takedown_notices_host_key", "takedown_notices", ["host_key"])
    op.create_table(
        "takedown_notice_items",
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("takedown_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["notice_id"], ["takedown_notices.id"]),
        sa.ForeignKeyConstraint(["takedown_id"], ["takedowns.id"]),
        sa.PrimaryKeyConstraint("notice_id", "takedown_id"),
    )
    op.create_index("ix_takedown_notice_items_takedown_id", "takedown_notice_items", ["takedown_id"])
    op.create_table(
        "takedown_transitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("takedown_id", sa.Integer(), nullable=False),
        sa.Column("from_state", sa.String(length=20), nullable=False),
        sa.Column("to_state", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        _time("at"),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=True),
        sa.Column("check_id", sa.String(length=64), nullable=True),
        sa.Column("notice_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["takedown_id"], ["takedowns.id"]),
        sa.ForeignKeyConstraint(["check_id"], ["takedown_checks.id"]),
        sa.ForeignKeyConstraint(["notice_id"], ["takedown_notices.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_takedown_transitions_takedown_id", "takedown_transitions", ["takedown_id"])
    for statement in trigger_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
    for table in ("takedown_transitions", "takedown_notice_items", "takedown_notices", "takedown_checks",
                  "takedowns", "takedown_hosts"):
        op.drop_table(table)
