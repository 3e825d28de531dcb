"""case models: per-case heads learned from reviewers (issue 20), and their scores on matches

- ``case_models``: one row per trained version of a case's head (weights in the object store,
  their SHA-256 here), never updated (triggers), deleted with the case (ON DELETE CASCADE).
- ``matches``: ``case_score`` (the head's score of the face, the base ``similarity`` stays) and
  ``case_model_version`` (which version scored it), both null where no head scored the match.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = [
    """CREATE TRIGGER case_models_no_update BEFORE UPDATE ON case_models
       BEGIN SELECT RAISE(ABORT, 'case_models is append-only'); END""",
]
POSTGRES_TRIGGERS = [
    """CREATE FUNCTION case_models_append_only() RETURNS trigger LANGUAGE plpgsql AS
       $$ BEGIN RAISE EXCEPTION 'case_models is append-only'; END $$""",
    """CREATE TRIGGER case_models_append_only BEFORE UPDATE ON case_models
       FOR EACH STATEMENT EXECUTE FUNCTION case_models_append_only()""",
]


def upgrade() -> None:
    op.create_table(
        "case_models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("base_model_version", sa.String(length=128), nullable=False),
        sa.Column("object_key", sa.String(length=300), nullable=False),
        sa.Column("weights_sha256", sa.String(length=64), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("base_threshold", sa.Float(), nullable=False),
        sa.Column("floor", sa.Float(), nullable=False),
        sa.Column("positives", sa.Integer(), nullable=False),
        sa.Column("negatives", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("decisions", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("trained_by", sa.String(length=200), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "version"),
    )
    op.create_index("ix_case_models_case_id", "case_models", ["case_id"])
    # Plain ADD COLUMN (SQLite has it): a batch copy of ``matches`` would drop the table, and with
    # foreign keys on, SQLite's implicit delete would cascade to every match decision.
    op.add_column("matches", sa.Column("case_score", sa.Float(), nullable=True))
    op.add_column("matches", sa.Column("case_model_version", sa.Integer(), nullable=True))
    triggers = POSTGRES_TRIGGERS if op.get_bind().dialect.name == "postgresql" else SQLITE_TRIGGERS
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS case_models_append_only ON case_models")
        op.execute("DROP FUNCTION IF EXISTS case_models_append_only()")
    op.drop_column("matches", "case_model_version")  # SQLite 3.35+ drops a column in place
    op.drop_column("matches", "case_score")
    op.drop_table("case_models")
