"""reference media: when its hashes were last written to Milvus (issue 20)

``reference_media.hashes_written_at``: set after each write of a reference's hashes is
acknowledged. The pipeline's image-hash search asks Milvus to see every write up to the
newest of these among the watched cases (a guarantee timestamp) instead of every write up to
now (Strong consistency, which waits for the next time tick: 603 ms a search measured in the writer).
Existing rows take their ``added_at``: their hashes were written before it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, as in 0008: a batch copy of the table would cascade deletes under SQLite.
    op.add_column("reference_media", sa.Column("hashes_written_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE reference_media SET hashes_written_at = added_at")


def downgrade() -> None:
    op.drop_column("reference_media", "hashes_written_at")
