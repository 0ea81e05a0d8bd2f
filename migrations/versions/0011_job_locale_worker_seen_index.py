"""job locale and workers.seen_at index: the requester's language on the job (its late private
answers use it), and an index for the "workers seen lately" reads (/healthz, the claim's model list,
the worker list's clean-up)

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-07 04:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locale", sa.String(length=16), nullable=True))
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.create_index("ix_workers_seen_at", ["seen_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_index("ix_workers_seen_at")
    # A plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35), not a batch copy of `jobs`: dropping the old
    # `jobs` table would delete every job's results through their ON DELETE CASCADE foreign key.
    op.drop_column("jobs", "locale")
