"""cases: when their newest face vector was written to Milvus (issue 20)

``cases.faces_written_at``: set after each write of one of the case's face vectors (an
enrolled photo, a reference image's face, a photo embedded again for another model) is
acknowledged. The watchlist's search of the enrolled faces asks Milvus to see every write up
to the newest of these among the watched cases (a guarantee timestamp) instead of every write
up to now (Strong consistency, which waits for the next time tick: 603 ms a search measured in the writer).
Existing cases take the moment of this migration: whatever they have was written before it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 04:15:00
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, as in 0008 and 0009: a batch copy of the table would cascade deletes under SQLite.
    op.add_column("cases", sa.Column("faces_written_at", sa.DateTime(timezone=True), nullable=True))
    now = dt.datetime.now(dt.UTC)
    if op.get_bind().dialect.name == "sqlite":  # naive UTC there, as stores/cases.UTCDateTime keeps it
        now = now.replace(tzinfo=None)
    cases = sa.table("cases", sa.column("faces_written_at", sa.DateTime(timezone=True)))
    op.execute(cases.update().values(faces_written_at=now))


def downgrade() -> None:
    op.drop_column("cases", "faces_written_at")
