"""safety policy: a server's safety level, its review channel and whether a held result keeps its
charge; each job remembers whether its channel was age-restricted and who approved a held result

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("guild_configs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("safety_level", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("safety_everywhere", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("charge_held", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("review_channel_id", sa.BigInteger(), nullable=True))
    # Plain ALTER TABLE ... ADD COLUMN, not a batch copy of `jobs`: on SQLite a batch with a SQL-expression
    # default recreates the table, and dropping the old `jobs` deletes every job's results through their
    # ON DELETE CASCADE foreign key (tests/core/test_variations.py upgrades with results stored).
    op.add_column("jobs", sa.Column("channel_nsfw", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("jobs", sa.Column("safety_approved_by", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # In place (SQLite >= 3.35), not a batch copy of `jobs`: dropping the old `jobs` table would delete
    # every job's results through their ON DELETE CASCADE foreign key (see 0011).
    op.drop_column("jobs", "safety_approved_by")
    op.drop_column("jobs", "channel_nsfw")
    with op.batch_alter_table("guild_configs", schema=None) as batch_op:
        batch_op.drop_column("review_channel_id")
        batch_op.drop_column("charge_held")
        batch_op.drop_column("safety_everywhere")
        batch_op.drop_column("safety_level")
