"""prompt enhancement: a server's default (guild_configs.enhance), and per job the prompt the worker's
language model wrote (jobs.enhanced_prompt) or why it was not used (jobs.enhance_note)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 08:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("guild_configs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("enhance", sa.Boolean(), server_default=sa.false(), nullable=False))
    # Plain ALTER TABLE ... ADD COLUMN, never a batch copy of `jobs`: on SQLite dropping the old `jobs`
    # would delete every job's results through their ON DELETE CASCADE foreign key (see 0021).
    op.add_column("jobs", sa.Column("enhanced_prompt", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("enhance_note", sa.Text(), nullable=True))


def downgrade() -> None:
    # In place (SQLite >= 3.35), not a batch copy of `jobs` (see upgrade).
    op.drop_column("jobs", "enhance_note")
    op.drop_column("jobs", "enhanced_prompt")
    with op.batch_alter_table("guild_configs", schema=None) as batch_op:
        batch_op.drop_column("enhance")
