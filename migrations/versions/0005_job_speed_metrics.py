"""job speed metrics: seconds per denoising step and peak GPU memory

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 23:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seconds_per_step", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("peak_gpu_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("peak_gpu_bytes")
        batch_op.drop_column("seconds_per_step")
