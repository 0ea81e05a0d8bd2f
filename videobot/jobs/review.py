"""Held results: the safety policy's transitions (``videobot.safety.holds``).

    succeeded ──hold (flagged here)──▶ held ──approve──▶ succeeded (posted as usual, not checked again)
                                          └──reject───▶ failed (results deleted, refunded)

The bot asks ``hold_if_flagged`` before it posts a result: in one transaction it reads the stored
score, the server's settings and the channel's age restriction kept with the job, and holds the job
(refunded unless the server keeps the charge, exactly once through the ledger). A held job stays in the
database until a moderator decides or retention purges its files, whatever restarts; ``notified_at``
marks that its review post and the requester's notice are done (``mark_held_told``). Every hold and
decision is in the audit log (``mod_actions``: who, when, score); the bot itself is actor 0.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from videobot import guilds, quota
from videobot.audit import audit
from videobot.db import db_now
from videobot.i18n import N_
from videobot.jobs.changes import Changes
from videobot.jobs.statements import update_jobs
from videobot.models import Job, JobInput, JobResult, JobStatus, LedgerEntry, LedgerKind
from videobot.safety import DEFAULT_LEVEL, holds, job_score

log = logging.getLogger(__name__)

#: The actor of what the bot decides by itself in the audit log.
BOT_ACTOR = 0
#: Stored in English, shown in the requester's language (``job_error`` recognises them).
REJECTED_MESSAGE = N_(
    "A moderator reviewed your video and did not approve it for this channel. Your credit was refunded."
)
NO_REVIEW_MESSAGE = N_(
    "Your video did not pass this server's safety check, and the server has no review channel, so it "
    "was not posted. Your credit was refunded."
)


@dataclass(frozen=True)
class Held:
    """A held job as the bot needs it to ask for a review."""

    job: Job
    score: float | None
    level: str
    #: Where it waits for a moderator; None: the server has none (the job is rejected).
    review_channel_id: int | None
    #: Its charge was given back.
    refunded: bool


class Reviewing(Changes):
    """Hold a flagged result, and a moderator's approve or reject."""

    async def hold_if_flagged(self, job_id: int) -> bool:
        """succeeded → held when the server's safety policy holds this result (refunded unless the
        server keeps the charge). False: post it (not flagged, approved already, or not succeeded)."""
        async with self.db.sessionmaker() as s:  # reads first: most results are posted, no write
            job = (await s.execute(select(Job).where(Job.id == job_id))).scalar_one_or_none()
            if job is None or job.status != JobStatus.SUCCEEDED.value or job.safety_approved_by is not None:
                return False
            score = await _score(s, job_id)
            config = await guilds.get_config(s, job.guild_id)
        if not holds(
            score, config.safety_level, channel_nsfw=job.channel_nsfw, everywhere=config.safety_everywhere
        ):
            return False
        async with self.db.transaction() as s:
            res = await s.execute(
                update_jobs(
                    Job.id == job_id, Job.status == JobStatus.SUCCEEDED.value, status=JobStatus.HELD.value
                )
            )
            if res.rowcount != 1:
                return False
            refunded = False if config.charge_held else await quota.refund(s, job_id, reason="held")
            level = config.safety_level or DEFAULT_LEVEL.value
            await audit(
                s,
                job.guild_id,
                BOT_ACTOR,
                "safety.held",
                job_id,
                {"score": score, "level": level, "refunded": refunded, "channel_id": job.channel_id},
                None,
            )
        log.info("job %s: result held for review (safety score %s, level %s)", job_id, score, level)
        return True

    async def held(self, job_id: int) -> Held | None:
        """A held job with its score and its server's review channel; None when it is not held."""
        async with self.db.sessionmaker() as s:
            job = (await s.execute(select(Job).where(Job.id == job_id))).scalar_one_or_none()
            if job is None or job.status != JobStatus.HELD.value:
                return None
            score = await _score(s, job_id)
            config = await guilds.get_config(s, job.guild_id)
            refund = (
                await s.execute(
                    select(LedgerEntry.id).where(
                        LedgerEntry.job_id == job_id, LedgerEntry.kind == LedgerKind.REFUND
                    )
                )
            ).first()
        return Held(
            job=job,
            score=score,
            level=config.safety_level or DEFAULT_LEVEL.value,
            review_channel_id=config.review_channel_id,
            refunded=refund is not None,
        )

    async def mark_held_told(self, job_id: int) -> bool:
        """The held job's review post and the requester's notice are done (the interaction token is
        kept: a decision within its lifetime is told privately on it)."""
        async with self.db.transaction() as s:
            res = await s.execute(
                update_jobs(
                    Job.id == job_id,
                    Job.status == JobStatus.HELD.value,
                    Job.notified_at.is_(None),
                    touch=False,
                    notified_at=db_now(),
                )
            )
        return res.rowcount == 1

    async def approve(self, job_id: int, *, moderator_id: int, guild_id: int) -> bool:
        """held → succeeded: the delivery loop posts it where it was asked, once, as any result.
        False when it was not held (decided already, purged, another server's)."""
        async with self.db.transaction() as s:
            score = await _score(s, job_id)
            res = await s.execute(
                update_jobs(
                    Job.id == job_id,
                    Job.guild_id == guild_id,
                    Job.status == JobStatus.HELD.value,
                    status=JobStatus.SUCCEEDED.value,
                    safety_approved_by=moderator_id,
                )
            )
            if res.rowcount != 1:
                return False
            await audit(s, guild_id, moderator_id, "safety.approve", job_id, {"score": score}, None)
        log.info("job %s: held result approved by %s", job_id, moderator_id)
        return True

    async def reject(
        self, job_id: int, *, actor_id: int, guild_id: int, message: str = REJECTED_MESSAGE
    ) -> bool:
        """held → failed: its stored files deleted, refunded (once), the requester told by the delivery
        loop (``notified_at`` cleared). False when it was not held."""
        async with self.db.transaction() as s:
            score = await _score(s, job_id)
            res = await s.execute(
                update_jobs(
                    Job.id == job_id,
                    Job.guild_id == guild_id,
                    Job.status == JobStatus.HELD.value,
                    status=JobStatus.FAILED.value,
                    error_code="rejected",
                    error_message=message,
                    notified_at=None,
                )
            )
            if res.rowcount != 1:
                return False
            await s.execute(JobResult.__table__.delete().where(JobResult.job_id == job_id))
            await s.execute(JobInput.__table__.delete().where(JobInput.job_id == job_id))
            await quota.refund(s, job_id, reason="rejected")
            await audit(s, guild_id, actor_id, "safety.reject", job_id, {"score": score}, None)
        log.info("job %s: held result rejected by %s; stored files deleted", job_id, actor_id or "the bot")
        return True


async def _score(s: AsyncSession, job_id: int) -> float | None:
    """A job's safety score: the highest of its stored videos'."""
    rows = await s.execute(select(JobResult.safety_score).where(JobResult.job_id == job_id))
    return job_score(rows.scalars())
