"""Cancelling: a queued job ends at once, a running one gets the flag its worker's heartbeat reads; every
transition that meets the flag ends the job ``cancelled``, refunded once (``_end_cancelled``).
"""

from __future__ import annotations

import logging

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from videobot import quota
from videobot.db import db_now
from videobot.errors import JobNotFound, LeaseLost
from videobot.i18n import msg
from videobot.jobs.changes import Changes
from videobot.jobs.records import CANCEL_MESSAGE, JOB_NOT_FOUND, CancelOutcome, Claim
from videobot.jobs.statements import LEASE_CLEARED, drop_previews, update_jobs
from videobot.models import Job, JobStatus

log = logging.getLogger(__name__)


class Cancelling(Changes):
    """Cancel a job; end flagged jobs cancelled and refunded."""

    async def cancel(self, job_id: int, *, user_id: int, is_moderator: bool = False) -> CancelOutcome:
        """Cancel a job: a queued one at once (refunded), a running one by setting the flag the worker checks.

        Raises ``JobNotFound`` for a job that does not exist or belongs to someone else (unless moderator).
        """
        async with self.db.transaction() as s:
            job = await s.get(Job, job_id)
            if job is None or (job.user_id != user_id and not is_moderator):
                raise JobNotFound(msg(JOB_NOT_FOUND, job=job_id))
            if await self._end_cancelled(s, [Job.id == job_id, Job.status == JobStatus.QUEUED.value]):
                state = "cancelled"
            else:
                res = await s.execute(
                    update_jobs(
                        Job.id == job_id, Job.status == JobStatus.RUNNING.value, cancel_requested=True
                    )
                )
                state = "requested" if res.rowcount == 1 else "finished"
                if res.rowcount == 1:
                    await self._notify(s, [job_id])
            await s.refresh(job)
        log.info("job %s cancel by %s: %s", job_id, user_id, state)
        return CancelOutcome(state=state, job=job)

    async def cancel_requested(self, c: Claim) -> bool:
        """True if the job's cancel flag is set; raises ``LeaseLost`` if the job is no longer ours."""
        async with self.db.sessionmaker() as s:
            row = (await s.execute(select(Job.cancel_requested).where(*self._fence(c)))).first()
        if row is None:
            raise LeaseLost(f"job {c.job_id}: lease lost (attempt {c.attempt}, owner {c.owner})")
        return bool(row.cancel_requested)

    async def acknowledge_cancel(self, c: Claim) -> None:
        """The worker stopped a running job whose cancel flag was set: cancelled and refunded."""
        async with self.db.transaction() as s:
            if not await self._end_cancelled(s, self._fence(c)):
                raise LeaseLost(f"job {c.job_id}: not cancelled, lease lost")
        log.info("job %s cancelled while running, refunded", c.job_id)

    async def _end_cancelled(self, s: AsyncSession, where: list[ColumnElement[bool]]) -> list[int]:
        """Jobs matching ``where`` end ``cancelled``, each refunded once; returns their ids.

        The refunds are written before the status change, which stays the last write (the feed's stamp).
        """
        ids = list(
            (await s.execute(select(Job.id).where(*where).order_by(Job.id).with_for_update())).scalars()
        )
        if not ids:
            return []
        for job_id in ids:
            await quota.refund(s, job_id, reason="cancelled")
        ended = (
            (
                await s.execute(
                    update_jobs(
                        Job.id.in_(ids),
                        *where,
                        status=JobStatus.CANCELLED.value,
                        cancel_requested=True,
                        **LEASE_CLEARED,
                        finished_at=db_now(),
                        error_message=CANCEL_MESSAGE,
                        error_code="cancelled",
                    ).returning(Job.id)
                )
            )
            .scalars()
            .all()
        )
        if len(ended) != len(ids):  # the rows are locked (PostgreSQL) or the writer is alone (SQLite)
            raise RuntimeError(f"jobs {ids}: cancelled {ended} only")
        await drop_previews(s, ended)
        await self._notify(s, ended)
        return list(ended)
