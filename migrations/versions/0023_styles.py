"""styles: a server's LoRA styles (``/videoconfig style add``), picked with ``/video style:``

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 07:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "styles",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("repo_id", sa.String(length=96), nullable=False),
        sa.Column("weight_name", sa.String(length=200), nullable=False),
        sa.Column("scale", sa.Float(), nullable=False),
        sa.Column("trigger_words", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", "name", name=op.f("pk_styles")),
    )


def downgrade() -> None:
    op.drop_table("styles")
