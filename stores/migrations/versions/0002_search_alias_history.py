"""search alias history: which face collection the search used, for rollback

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 22:17:32.124450
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alias_changes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('alias', sa.String(length=200), nullable=False),
    sa.Column('collection', sa.String(length=200), nullable=False),
    sa.Column('model', sa.String(length=100), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alias_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alias_changes_alias'), ['alias'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('alias_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alias_changes_alias'))

    op.drop_table('alias_changes')
