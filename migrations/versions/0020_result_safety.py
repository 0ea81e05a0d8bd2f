"""result safety verdict: each stored video's safety score (the highest "unsafe" probability over its
sampled frames), the frame it came from and the classifier that scored it

Revision ID: 0020
Revises: 0011
Create Date: 2026-12-07 05:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("safety_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("safety_frame", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("safety_model", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_results", schema=None) as batch_op:
        batch_op.drop_column("safety_model")
        batch_op.drop_column("safety_frame")
        batch_op.drop_column("safety_score")
