"""The worker's side of a lease: claim the next job (fair share), renew the lease with progress, store a
preview, give the job back on shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Select, bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from videobot.db import db_now
from videobot.errors import LeaseLost
from videobot.guilds import get_config
from videobot.jobs.changes import Changes
from videobot.jobs.records import Beat, Claim
from videobot.jobs.statements import (
    LEASE_CLEARED,
    claim_statement,
    claimable,
    drop_previews,
    notify_sync,
    update_jobs,
)
from videobot.models import Job, JobPreview, JobStatus

log = logging.getLogger(__name__)

#: A preview is a small picture; a bigger one is refused (it would only slow the bot's reads).
MAX_PREVIEW_BYTES = 256 * 1024


class Claiming(Changes):
    """Claim, heartbeat, preview, release."""

    def _next_job_query(self, models: Iterable[str] | None) -> Select[tuple[int]]:
        """Fair share: fewest running jobs first, then the user served longest ago, then FIFO.

        Among jobs fair share ranks equal (the same member's, or members never served), one whose
        server style the worker has loaded (``b_styles``: style sources) goes first: no adapter to load,
        and no member waits longer for it (their turn is decided before the style is looked at)."""
        j = aliased(Job, name="j")
        r = aliased(Job, name="r")
        h = aliased(Job, name="h")
        running = (
            select(func.count())
            .select_from(r)
            .where(r.user_id == j.user_id, r.status == JobStatus.RUNNING.value)
            .scalar_subquery()
        )
        last_served = select(func.max(h.started_at)).where(h.user_id == j.user_id).scalar_subquery()
        q = select(j.id).where(*claimable(j, models))
        loaded = case(
            (j.params["style_source"].as_string().in_(bindparam("b_styles", expanding=True)), 0), else_=1
        )
        q = q.order_by(running, last_served.asc().nulls_first(), loaded, j.queued_at, j.id).limit(1)
        if self.db.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True, of=j)
        return q

    async def _anything_queued(self, models: tuple[str, ...]) -> bool:
        async with self.db.sessionmaker() as s:
            return (
                await s.execute(select(Job.id).where(*claimable(Job, models)).limit(1))
            ).first() is not None

    async def claim(
        self, owner: str, models: Iterable[str] | None = None, *, styles: Iterable[str] = ()
    ) -> Claim | None:
        """Atomically take the next job (see ``_next_job_query``), or None if nothing is queued.

        ``styles``: the style sources the worker has loaded (preferred among equals)."""
        # Building the fair-share query (three aliases, two subqueries) costs ~10 ms of Python per
        # claim: the whole statement is built once per model list (``claim_statement``); SQLAlchemy
        # caches its compiled form.
        key = tuple(models or ())
        if key in self._idle and not await self._anything_queued(key):
            # An idle worker polls every second: a read (beside writers, in WAL) instead of the write
            # lock each time, which a submit would otherwise wait behind. Busy workers skip the look.
            return None
        async with self.db.transaction() as s:
            row = await self._take_next(s, owner, key, tuple(styles))
        return self._claimed(row, owner, key)

    async def _take_next(
        self, s: AsyncSession, owner: str, key: tuple[str, ...], styles: tuple[str, ...] = ()
    ) -> Any:
        """The claim's one statement, in the caller's transaction: the claimed row, or None."""
        conn = await s.connection()
        return await conn.run_sync(self._take_next_sync, owner, key, styles)

    def _take_next_sync(
        self, conn: Connection, owner: str, key: tuple[str, ...], styles: tuple[str, ...] = ()
    ) -> Any:
        stmt = self._next_id_cache.get(key)
        if stmt is None:
            stmt = self._next_id_cache[key] = claim_statement(self._next_job_query(key).scalar_subquery())
        bound = {"b_owner": owner, "b_lease": self.config.lease_seconds, "b_styles": list(styles)}
        row = conn.execute(stmt, bound).first()
        if row is not None:
            notify_sync(conn, [row.id])
        return row

    def _claimed(self, row: Any, owner: str, key: tuple[str, ...]) -> Claim | None:
        """After the commit: the ``Claim`` of a claimed row (None if nothing was queued)."""
        if row is None:
            self._idle.add(key)
            return None
        self._idle.discard(key)
        log.info("job %s claimed by %s (attempt %s)", row.id, owner, row.attempts)
        return Claim(
            job_id=row.id,
            owner=owner,
            attempt=row.attempts,
            model=row.model,
            params=row.params,
            upload_limit_bytes=row.upload_limit_bytes,
            lease_expires_at=row.lease_expires_at,
        )

    async def heartbeat(self, c: Claim, progress: tuple[int, int] | None = None) -> Beat:
        """Renew the lease (and record progress). Raises ``LeaseLost`` if the job is no longer ours."""
        values: dict[str, Any] = {"lease_expires_at": db_now() + self.config.lease_seconds}
        if progress is not None:
            values.update(
                progress_step=progress[0],
                progress_total=progress[1],
                progress_updated_at=db_now(),
                updated_at=db_now(),
            )
        stmt = update_jobs(*self._fence(c), touch=False, **values).returning(
            Job.cancel_requested, Job.lease_expires_at
        )
        async with self.db.transaction() as s:
            row = (await s.execute(stmt)).first()
        if row is None:
            raise LeaseLost(f"job {c.job_id}: lease lost (attempt {c.attempt}, owner {c.owner})")
        return Beat(cancel_requested=bool(row.cancel_requested), lease_expires_at=row.lease_expires_at)

    async def put_preview(self, c: Claim, step: int, data: bytes, content_type: str) -> None:
        """Store the running job's latest preview, replacing the one before (fenced by the lease).

        Stamps the job as changed, so the bot's feed shows it. Raises ``LeaseLost`` if the job is no
        longer ours, ``ValueError`` for a preview over ``MAX_PREVIEW_BYTES``.
        """
        if len(data) > MAX_PREVIEW_BYTES:
            raise ValueError(f"job {c.job_id}: a preview of {len(data)} bytes is over {MAX_PREVIEW_BYTES}")
        async with self.db.transaction() as s:
            res = await s.execute(update_jobs(*self._fence(c)))
            if res.rowcount != 1:
                raise LeaseLost(f"job {c.job_id}: preview not stored, lease lost")
            await s.merge(
                JobPreview(
                    job_id=c.job_id, data=data, content_type=content_type, step=step, updated_at=db_now()
                )
            )

    async def blocklist_of(self, job_id: int) -> list[str]:
        """The blocklist of the server the job was asked in (``/videoconfig block-add``): a worker checks
        what its language model wrote against it, as the bot checked the member's words."""
        async with self.db.sessionmaker() as s:
            guild_id = (await s.execute(select(Job.guild_id).where(Job.id == job_id))).scalar_one_or_none()
            if guild_id is None:
                return []
            return list((await get_config(s, guild_id)).blocklist)

    async def record_enhancement(self, c: Claim, enhanced_prompt: str | None, note: str | None) -> None:
        """Store the prompt the worker's language model wrote for the running job, or (``note``) why
        the member's prompt was used as written (fenced by the lease; the bot reads both with the
        result). Raises ``LeaseLost`` if the job is no longer ours."""
        async with self.db.transaction() as s:
            res = await s.execute(
                update_jobs(*self._fence(c), touch=False, enhanced_prompt=enhanced_prompt, enhance_note=note)
            )
            if res.rowcount != 1:
                raise LeaseLost(f"job {c.job_id}: enhanced prompt not stored, lease lost")

    async def release(self, c: Claim) -> bool:
        """Give a running job back to the queue (graceful shutdown); the attempt does not count.

        A job whose cancel flag was set is not queued again: it ends ``cancelled`` and refunded.
        Returns False if the job was no longer ours.
        """
        async with self.db.transaction() as s:
            if await self._end_cancelled(s, [*self._fence(c), Job.cancel_requested.is_(True)]):
                log.info("job %s released by %s after a cancel: cancelled, refunded", c.job_id, c.owner)
                return True
            res = await s.execute(
                update_jobs(
                    *self._fence(c),
                    status=JobStatus.QUEUED.value,
                    **LEASE_CLEARED,
                    attempts=Job.attempts - 1,
                    progress_step=0,
                )
            )
            if res.rowcount == 1:
                await drop_previews(s, [c.job_id])
                await self._notify(s, [c.job_id])
        ok = res.rowcount == 1
        log.info("job %s released by %s: %s", c.job_id, c.owner, "queued again" if ok else "already gone")
        return ok
