"""intakes: requests acknowledged but not answered yet (answered after a restart; a pending picture's
reserved credits)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 04:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "intakes",
        sa.Column("interaction_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("verb", sa.String(length=16), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("role_ids", sa.JSON(), nullable=False),
        sa.Column("application_id", sa.BigInteger(), nullable=False),
        sa.Column("interaction_token", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("interaction_id", name=op.f("pk_intakes")),
    )
    op.create_index("ix_intakes_member", "intakes", ["guild_id", "user_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_intakes_member", table_name="intakes")
    op.drop_table("intakes")
