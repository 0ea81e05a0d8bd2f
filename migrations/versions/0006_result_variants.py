"""result variants: a job with variations stores one result row per video

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 02:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing rows are the first (and only) video of their job: variant 0.
    with op.batch_alter_table("job_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("variant", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("job_results", schema=None) as batch_op:
        batch_op.drop_constraint("pk_job_results", type_="primary")
        batch_op.create_primary_key("pk_job_results", ["job_id", "variant"])
        batch_op.alter_column("variant", server_default=None)


def downgrade() -> None:
    op.execute("DELETE FROM job_results WHERE variant <> 0")
    with op.batch_alter_table("job_results", schema=None) as batch_op:
        batch_op.drop_constraint("pk_job_results", type_="primary")
        batch_op.create_primary_key("pk_job_results", ["job_id"])
        batch_op.drop_column("variant")
