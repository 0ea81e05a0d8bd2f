"""The bot's marks on a finished job: its status message, posted (delivered), not postable
(undeliverable, refunded), the requester told, the posted video deleted by its member.
"""

from __future__ import annotations

import logging

from videobot import quota
from videobot.db import db_now
from videobot.jobs.changes import Changes
from videobot.jobs.records import FINISHED
from videobot.jobs.statements import update_jobs
from videobot.models import Job, JobInput, JobResult, JobStatus

log = logging.getLogger(__name__)


class Delivering(Changes):
    """What the bot records after it posted (or could not post) a job's messages."""

    async def set_status_message(self, job_id: int, message_id: int) -> None:
        async with self.db.transaction() as s:
            await s.execute(update_jobs(Job.id == job_id, status_message_id=message_id))

    async def mark_delivered(self, job_id: int, message_id: int) -> bool:
        """succeeded → delivered, recording the posted message. False if it was not 'succeeded'."""
        async with self.db.transaction() as s:
            res = await s.execute(
                update_jobs(
                    Job.id == job_id,
                    Job.status == JobStatus.SUCCEEDED.value,
                    status=JobStatus.DELIVERED.value,
                    result_message_id=message_id,
                    delivered_at=db_now(),
                    notified_at=db_now(),
                    interaction_token=None,
                )
            )
        log.info("job %s delivered as message %s", job_id, message_id)
        return res.rowcount == 1

    async def mark_undeliverable(self, job_id: int, reason: str) -> bool:
        """succeeded → undeliverable (channel gone, no permission, …): no retries, and refunded.

        Nobody pays for a video they did not get.
        """
        async with self.db.transaction() as s:
            res = await s.execute(
                update_jobs(
                    Job.id == job_id,
                    Job.status == JobStatus.SUCCEEDED.value,
                    status=JobStatus.UNDELIVERABLE.value,
                    error_message=reason,
                    error_code="undeliverable",
                    delivered_at=db_now(),
                    notified_at=db_now(),
                    interaction_token=None,
                )
            )
            if res.rowcount == 1:
                await quota.refund(s, job_id, reason="undeliverable")
        log.warning("job %s undeliverable, refunded: %s", job_id, reason)
        return res.rowcount == 1

    async def mark_notified(self, job_id: int) -> bool:
        """Record that the requester was told about a failed or cancelled job (told once)."""
        async with self.db.transaction() as s:
            res = await s.execute(
                update_jobs(
                    Job.id == job_id,
                    Job.notified_at.is_(None),
                    Job.status.in_(FINISHED),
                    touch=False,
                    notified_at=db_now(),
                    interaction_token=None,
                )
            )
        return res.rowcount == 1

    async def forget_result(self, job_id: int) -> None:
        """The member (or a moderator) deleted the posted video: remove its stored file and inputs and
        its message id, so nothing can be made from it any more (its buttons then say it is gone)."""
        async with self.db.transaction() as s:
            await s.execute(update_jobs(Job.id == job_id, touch=False, result_message_id=None))
            await s.execute(JobResult.__table__.delete().where(JobResult.job_id == job_id))
            await s.execute(JobInput.__table__.delete().where(JobInput.job_id == job_id))
        log.info("job %s: result deleted by its requester or a moderator; stored files removed", job_id)
