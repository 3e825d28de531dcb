"""case models: RESERVED for issue 20 (per-case models); being written in this session (empty until then)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 15:40:00
"""

from __future__ import annotations

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
