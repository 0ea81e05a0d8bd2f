"""Upkeep the bot runs every minute (``videobot.maintenance``): expired leases recovered, jobs that
waited too long or were never posted ended and refunded, old stored files removed.
"""

from __future__ import annotations

import logging

from sqlalchemy import and_, or_, select

from videobot import quota
from videobot.db import db_now
from videobot.jobs.cancel import Cancelling
from videobot.jobs.records import (
    CRASH_MESSAGE,
    FINISHED,
    UNDELIVERABLE_MESSAGE,
    crash_message,
    expired_message,
)
from videobot.jobs.statements import LEASE_CLEARED, drop_previews, update_jobs
from videobot.models import Job, JobInput, JobResult, JobStatus

log = logging.getLogger(__name__)


class Upkeep(Cancelling):
    """Recover, expire, purge."""

    async def recover_stale(self) -> tuple[list[int], list[int]]:
        """Jobs whose lease expired go back to the queue; those out of attempts fail and are refunded;
        those whose cancel flag is set (and any queued job still flagged) end cancelled and refunded.

        Returns (requeued ids, ended ids: failed or cancelled).
        """
        expired = and_(Job.status == JobStatus.RUNNING.value, Job.lease_expires_at < db_now())
        async with self.db.transaction() as s:
            cancelled = await self._end_cancelled(
                s,
                [
                    Job.cancel_requested.is_(True),
                    or_(Job.status == JobStatus.QUEUED.value, expired),
                ],
            )
            failed_rows = (
                await s.execute(
                    update_jobs(
                        expired,
                        Job.attempts >= Job.max_attempts,
                        status=JobStatus.FAILED.value,
                        **LEASE_CLEARED,
                        finished_at=db_now(),
                        error_code="crashed",
                        error_message=CRASH_MESSAGE.format(n=Job.max_attempts),
                    ).returning(Job.id, Job.attempts)
                )
            ).all()
            for row in failed_rows:
                await quota.refund(s, row.id, reason="crashed")
                await s.execute(update_jobs(Job.id == row.id, error_message=str(crash_message(row.attempts))))
            requeued = (
                (
                    await s.execute(
                        update_jobs(
                            expired,
                            Job.attempts < Job.max_attempts,
                            status=JobStatus.QUEUED.value,
                            **LEASE_CLEARED,
                            progress_step=0,
                        ).returning(Job.id)
                    )
                )
                .scalars()
                .all()
            )
            await drop_previews(s, [*requeued, *(row.id for row in failed_rows)])
            await self._notify(s, [*requeued, *(row.id for row in failed_rows)])
        for job_id in requeued:
            log.warning("job %s: lease expired, queued again", job_id)
        for row in failed_rows:
            log.error("job %s: lease expired after %s attempts, failed and refunded", row.id, row.attempts)
        for job_id in cancelled:
            log.info("job %s: cancelled while its worker was gone; cancelled, refunded", job_id)
        return list(requeued), [*(row.id for row in failed_rows), *cancelled]

    async def purge_results(self, retention_seconds: float) -> int:
        """Remove stored videos delivered (or undeliverable) longer ago than the retention period."""
        async with self.db.transaction() as s:
            old = select(Job.id).where(
                Job.status.in_((JobStatus.DELIVERED.value, JobStatus.UNDELIVERABLE.value)),
                Job.delivered_at < db_now() - retention_seconds,
            )
            res = await s.execute(JobResult.__table__.delete().where(JobResult.job_id.in_(old)))
            # Inputs (images, clips to extend) of jobs that ended longer ago than the retention period.
            ended = select(Job.id).where(
                Job.status.in_(FINISHED), Job.finished_at < db_now() - retention_seconds
            )
            await s.execute(JobInput.__table__.delete().where(JobInput.job_id.in_(ended)))
        return res.rowcount or 0

    # ------------------------------------------------------------------ maintenance (run by the bot)
    async def expire_queued(self, max_wait_seconds: float) -> list[int]:
        """Jobs queued longer than ``max_wait_seconds`` (no worker took them): cancelled and refunded.

        The requester is told by the bot (the job is ``cancelled`` with ``error_code="expired"``).
        """
        notice = str(expired_message(max_wait_seconds))
        async with self.db.transaction() as s:
            ids = list(
                (
                    await s.execute(
                        update_jobs(
                            Job.status == JobStatus.QUEUED.value,
                            Job.queued_at < db_now() - max_wait_seconds,
                            status=JobStatus.CANCELLED.value,
                            finished_at=db_now(),
                            error_code="expired",
                            error_message=notice,
                        ).returning(Job.id)
                    )
                ).scalars()
            )
            for job_id in ids:
                await quota.refund(s, job_id, reason="expired")
            await self._notify(s, ids)
        for job_id in ids:
            log.warning("job %s: waited too long in the queue; cancelled and refunded", job_id)
        return ids

    async def expire_undelivered(self, retention_seconds: float) -> list[int]:
        """Videos made but never posted within the retention period: undeliverable, refunded, bytes removed."""
        async with self.db.transaction() as s:
            ids = list(
                (
                    await s.execute(
                        update_jobs(
                            Job.status == JobStatus.SUCCEEDED.value,
                            Job.finished_at < db_now() - retention_seconds,
                            status=JobStatus.UNDELIVERABLE.value,
                            error_code="undeliverable",
                            error_message=UNDELIVERABLE_MESSAGE,
                            delivered_at=db_now(),
                            notified_at=db_now(),
                            interaction_token=None,
                        ).returning(Job.id)
                    )
                ).scalars()
            )
            for job_id in ids:
                await quota.refund(s, job_id, reason="undeliverable")
            await self._notify(s, ids)
            if ids:
                await s.execute(JobResult.__table__.delete().where(JobResult.job_id.in_(ids)))
                await s.execute(JobInput.__table__.delete().where(JobInput.job_id.in_(ids)))
        for job_id in ids:
            log.warning("job %s: never posted within the retention period; refunded and removed", job_id)
        return ids
