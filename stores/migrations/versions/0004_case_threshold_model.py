"""cases.threshold_model: the model a case's own match threshold was set for

Similarities of two models are on different scales (dlib's ResNet matches above 0.94,
FaceNet above 0.6): a case's own threshold applies to the model it was set for, and another
model uses its default. Cases created before this column keep their threshold for any model.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 19:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch_op:
        batch_op.add_column(sa.Column("threshold_model", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch_op:
        batch_op.drop_column("threshold_model")
