"""Active reading time: assignments.seen_at and active_s (the running count), responses.raw_duration_s
(submitted - first shown, idle included; duration_s becomes the active time).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 12:00:00
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seen_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('active_s', sa.Float(), nullable=True))
    with op.batch_alter_table('responses', schema=None) as batch_op:
        batch_op.add_column(sa.Column('raw_duration_s', sa.Float(), nullable=True))
    # answers saved before this revision: their duration_s was the raw time
    op.execute("UPDATE responses SET raw_duration_s = duration_s")


def downgrade() -> None:
    with op.batch_alter_table('responses', schema=None) as batch_op:
        batch_op.drop_column('raw_duration_s')
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.drop_column('active_s')
        batch_op.drop_column('seen_at')
