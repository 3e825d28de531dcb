"""matching: reference media of a case, and the evidence of each match (issue 20)

- ``reference_media``: the client's known images and videos (and imported hash lists) per case,
  deleted with the case. Their PDQ hashes are in Milvus, not here.
- ``matches``: ``signals`` (JSON: which signals fired and their scores, e.g. face similarity and
  PDQ distance; null on matches from before, which are face matches) and ``image_key`` (the
  frame thumbnail in the crops bucket that a match found by an image hash alone shows, since it
  has no face crop).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reference_media",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("hashes", sa.Integer(), nullable=False),
        sa.Column("min_quality", sa.Integer(), nullable=True),
        sa.Column("face_vectors", sa.Integer(), nullable=False),
        sa.Column("thumbnail_key", sa.String(length=300), nullable=True),
        sa.Column("original_key", sa.String(length=300), nullable=True),
        sa.Column("added_by", sa.String(length=200), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "sha256"),
    )
    op.create_index("ix_reference_media_case_id", "reference_media", ["case_id"])
    with op.batch_alter_table("matches") as batch_op:
        batch_op.add_column(sa.Column("signals", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("image_key", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("matches") as batch_op:
        batch_op.drop_column("image_key")
        batch_op.drop_column("signals")
    op.drop_index("ix_reference_media_case_id", table_name="reference_media")
    op.drop_table("reference_media")
