"""the review workbench: staff accounts, web sessions, case assignments, claims, decisions

- ``users``: staff who sign in to the workbench (argon2id password, TOTP second factor,
  lock-out after failed sign-ins, per-user viewing settings and language). API keys stay for
  machines; a key and a user of the same name are the same person for case assignments.
- ``web_sessions``: server-side sessions; the cookie carries a random token whose SHA-256 is
  stored here, so a database reader cannot sign in as anyone.
- ``login_attempts``: the sign-in throttle's memory (by username and by client address).
- ``case_assignments``: which staff member works on which case (need-to-know by case).
- ``organisation_settings``: the organisation's defaults (blur, greyscale, claim time, break).
- ``matches``: ``unsure`` joins the statuses; a note, an exclusive claim (who, until when) and
  the media's perceptual hash (for near-duplicate clusters in the queue).
- ``match_decisions``: every decision with its note, append-only, exported as the decision log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER match_decisions_no_{verb.lower()} BEFORE {verb} ON match_decisions
        BEGIN SELECT RAISE(ABORT, 'match_decisions is append-only'); END"""
    for verb in ("UPDATE",)
]
POSTGRES_TRIGGERS = [
    """CREATE FUNCTION match_decisions_append_only() RETURNS trigger LANGUAGE plpgsql AS
       $$ BEGIN RAISE EXCEPTION 'match_decisions is append-only'; END $$""",
    """CREATE TRIGGER match_decisions_append_only BEFORE UPDATE ON match_decisions
       FOR EACH STATEMENT EXECUTE FUNCTION match_decisions_append_only()""",
]


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("totp_secret", sa.String(length=64), nullable=True),
        sa.Column("totp_confirmed", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("last_totp_step", sa.BigInteger(), nullable=True),
        sa.Column("invite_sha256", sa.String(length=64), nullable=True),
        sa.Column("invite_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("blur_radius", sa.Integer(), nullable=True),
        sa.Column("greyscale", sa.Boolean(), nullable=True),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
        sa.UniqueConstraint("invite_sha256"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("second_factor", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("review_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_login_attempts_username_at", "login_attempts", ["username", "at"])
    op.create_index("ix_login_attempts_client_at", "login_attempts", ["client", "at"])
    op.create_table(
        "case_assignments",
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("assigned_by", sa.String(length=200), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("case_id", "username"),
    )
    op.create_index("ix_case_assignments_username", "case_assignments", ["username"])
    op.create_table(
        "organisation_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("matches") as batch_op:
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("media_phash", sa.String(length=16), nullable=True))
        batch_op.create_index("ix_matches_case_status", ["case_id", "status"])
    op.create_table(
        "match_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("match_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("bulk", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["match_id"], ["matches.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_match_decisions_case_id", "match_decisions", ["case_id"])
    op.create_index("ix_match_decisions_match_id", "match_decisions", ["match_id"])
    # Decisions are never edited (a new decision is a new row); they go only with their case
    # on withdrawal, so deletes stay allowed.
    triggers = POSTGRES_TRIGGERS if op.get_bind().dialect.name == "postgresql" else SQLITE_TRIGGERS
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS match_decisions_append_only ON match_decisions")
        op.execute("DROP FUNCTION IF EXISTS match_decisions_append_only()")
    op.drop_table("match_decisions")
    with op.batch_alter_table("matches") as batch_op:
        batch_op.drop_index("ix_matches_case_status")
        for column in ("media_phash", "claimed_until", "claimed_by", "note"):
            batch_op.drop_column(column)
    op.drop_table("organisation_settings")
    op.drop_table("case_assignments")
    op.drop_table("login_attempts")
    op.drop_table("web_sessions")
    op.drop_table("users")
