"""What every status change shares: the lease fence of a worker's writes, the ``NOTIFY`` at commit, and the
queue's configuration and claim caches (``JobQueue`` sets them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from videobot.jobs.queries import Queries
from videobot.jobs.records import Claim, QueueConfig
from videobot.jobs.statements import notify_sync
from videobot.models import Job, JobStatus


class Changes(Queries):
    """The base of each part of ``Transitions`` (on top of the reads: a submit answers with a position)."""

    config: QueueConfig
    #: The claim statement (with its fair-share "next job" subquery) per model list (see ``claim``).
    _next_id_cache: dict[tuple[str, ...], Any]
    #: Model lists whose last claim found nothing: the next claim looks before it takes the write lock.
    _idle: set[tuple[str, ...]]

    @staticmethod
    def _fence(c: Claim) -> list[Any]:
        return [
            Job.id == c.job_id,
            Job.status == JobStatus.RUNNING.value,
            Job.lease_owner == c.owner,
            Job.attempts == c.attempt,
        ]

    async def _notify(self, s: AsyncSession, job_ids: Iterable[int]) -> None:
        """PostgreSQL: tell the bot at commit which jobs changed (``notify_sync``)."""
        if self.db.dialect != "postgresql":
            return
        conn = await s.connection()
        await conn.run_sync(notify_sync, list(job_ids))
