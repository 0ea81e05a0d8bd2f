"""guild language: the language of the bot's public messages in a server (NULL: Discord's preferred locale)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 02:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("guild_configs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("guild_configs", schema=None) as batch_op:
        batch_op.drop_column("language")
