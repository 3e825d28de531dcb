"""matching: RESERVED for issue 20 (reference media and image hashes); being written in this session (empty until then)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 15:40:00
"""

from __future__ import annotations

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
