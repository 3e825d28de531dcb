"""face ids are 64-bit: enrolled_photos.face_id and matches.face_id as BIGINT

Face ids are Milvus INT64 primary keys (``stores.media.int64_key``, up to 2**63 - 1). SQLite's
INTEGER already holds 64 bits, so only other databases (PostgreSQL) change.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = (("enrolled_photos", "face_id"), ("matches", "face_id"))


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False)
