"""Every change of a job's status: submit and charge, claim, heartbeat, complete, fail, cancel, release,
recover, deliver. Each method is one transaction whose conditional ``UPDATE … WHERE status = …`` row
count is checked; a worker's writes are fenced by its lease (owner + attempt).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Select,
    Update,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from videobot import quota
from videobot.db import db_now
from videobot.errors import JobNotFound, LeaseLost, QuotaExceeded, TooManyQueued
from videobot.i18n import Joined, Number, discord_timestamp, join, msg, nmsg
from videobot.jobs.queries import Queries
from videobot.jobs.records import (
    ACTIVE,
    CANCEL_MESSAGE,
    CRASH_MESSAGE,
    FINISHED,
    JOB_NOT_FOUND,
    UNDELIVERABLE_MESSAGE,
    Beat,
    CancelOutcome,
    Claim,
    QueueConfig,
    ResultData,
    SubmitRequest,
    Submitted,
    crash_message,
    expired_message,
    wanted_videos,
)
from videobot.models import Intake, Job, JobInput, JobPreview, JobResult, JobStatus

log = logging.getLogger(__name__)

INPUT_CONTENT_TYPES = {"image": "image/png", "video": "video/mp4"}
#: A preview is a small picture; a bigger one is refused (it would only slow the bot's reads).
MAX_PREVIEW_BYTES = 256 * 1024
#: A batch result not known until the batch's positions are computed.
_PENDING = RuntimeError("pending")


class Transitions(Queries):
    """The status-changing half of ``JobQueue`` (on top of the reads: a submit answers with a position)."""

    config: QueueConfig
    #: The claim statement (with its fair-share "next job" subquery) per model list (see ``claim``).
    _next_id_cache: dict[tuple[str, ...], Any]
    #: Model lists whose last claim found nothing: the next claim looks before it takes the write lock.
    _idle: set[tuple[str, ...]]

    # ------------------------------------------------------------------ submit
    async def submit(self, req: SubmitRequest) -> Submitted:
        """Queue a job and charge for it in one transaction; idempotent by ``req.idempotency_key``.

        Raises ``QuotaExceeded`` or ``TooManyQueued`` (nothing written then).
        """
        existing = await self._by_key(req.idempotency_key)
        if existing is not None:
            return await self._submitted(existing, created=False, req=req)
        try:
            async with self.db.transaction() as s:
                existing = await self._by_key(req.idempotency_key, s)
                if existing is not None:
                    return await self._submitted(existing, created=False, req=req, session=s)
                job, balance = await self._queue_one(s, req)
                position = await self._position(s, job)
        except IntegrityError:
            # Lost a race on the idempotency key (PostgreSQL): the other submit won; return its job.
            existing = await self._by_key(req.idempotency_key)
            if existing is None:
                raise
            return await self._submitted(existing, created=False, req=req)
        self._log_queued(job, req)
        return Submitted(job=job, created=True, position=position, balance=balance)

    async def submit_many(self, reqs: list[SubmitRequest]) -> list[Submitted | Exception]:
        """``submit`` for several requests in ONE transaction (a burst of /video arriving together):
        one write lock and one commit instead of one per request. Each request is still charged once
        (idempotent by key, also within the batch) and refused on its own: its ``QuotaExceeded`` or
        ``TooManyQueued`` is returned in its place, nothing written for it. Any other error (the
        database, a key raced by another process) fails the whole batch: nothing of it is written,
        and the caller can submit the requests one by one."""
        created: list[tuple[int, Job, int, SubmitRequest]] = []
        by_key: dict[str, int] = {}
        dups: list[tuple[int, int]] = []
        results: list[Submitted | Exception] = [_PENDING] * len(reqs)
        # Members in one order (stable: a member's own requests keep theirs), so two batches written
        # at once on PostgreSQL lock member rows in the same order and never deadlock.
        order = sorted(range(len(reqs)), key=lambda i: (reqs[i].guild_id, reqs[i].user_id))
        async with self.db.transaction() as s:
            for i in order:
                req = reqs[i]
                if req.idempotency_key in by_key:
                    dups.append((i, by_key[req.idempotency_key]))
                    continue
                by_key[req.idempotency_key] = i
                existing = await self._by_key(req.idempotency_key, s)
                if existing is not None:
                    results[i] = await self._submitted(existing, created=False, req=req, session=s)
                    continue
                try:
                    job, balance = await self._queue_one(s, req)
                except (QuotaExceeded, TooManyQueued) as exc:
                    results[i] = exc
                    continue
                created.append((i, job, balance, req))
            # One projection of the queue for the whole batch (it is the same for every job in it).
            positions = await self._positions(s, {job.model for _, job, _, _ in created}) if created else {}
        for index, job, balance, req in created:
            self._log_queued(job, req)
            results[index] = Submitted(
                job=job, created=True, position=positions.get(job.id, 0), balance=balance
            )
        for index, first in dups:
            same = results[first]
            results[index] = replace(same, created=False) if isinstance(same, Submitted) else same
        return results

    def _log_queued(self, job: Job, req: SubmitRequest) -> None:
        log.info(
            "job %s queued (user %s, guild %s, model %s, cost %s)",
            job.id,
            req.user_id,
            req.guild_id,
            req.model,
            req.cost,
        )

    async def _queue_one(self, s: AsyncSession, req: SubmitRequest) -> tuple[Job, int]:
        """Check the member's limits, insert the job and charge it (inside the caller's transaction).
        Returns the job and the balance left; raises the refusal with nothing written."""
        await quota.lock_member(s, req.guild_id, req.user_id)
        if req.intake_id is not None:  # its reservation turns into this job's charge (or its refusal)
            await s.execute(_Hot.unreserve, {"b_id": req.intake_id})
        st = await self._check_limits(s, req.guild_id, req.user_id, req.role_ids, req.cost)
        job = Job(
            idempotency_key=req.idempotency_key,
            guild_id=req.guild_id,
            channel_id=req.channel_id,
            user_id=req.user_id,
            kind=req.kind,
            parent_job_id=req.parent_job_id,
            model=req.model,
            params=req.params,
            cost=req.cost,
            status=JobStatus.QUEUED.value,
            attempts=0,
            max_attempts=self.config.max_attempts,
            cancel_requested=False,
            progress_step=0,
            progress_total=int(req.params.get("num_inference_steps") or 0),
            upload_limit_bytes=req.upload_limit_bytes,
            application_id=req.application_id,
            interaction_token=req.interaction_token,
            interaction_expires_at=(st.now + req.interaction_ttl) if req.interaction_token else None,
            reply_to_message_id=req.reply_to_message_id,
            locale=req.locale,
            created_at=st.now,
            queued_at=st.now,
            updated_at=st.now,
        )
        s.add(job)
        await s.flush()
        for kind, data in req.inputs.items():
            s.add(
                JobInput(
                    job_id=job.id,
                    kind=kind,
                    data=data,
                    content_type=INPUT_CONTENT_TYPES.get(kind, "application/octet-stream"),
                    created_at=st.now,
                )
            )
        await quota.charge(s, req.guild_id, req.user_id, job.id, req.cost)
        return job, st.balance - req.cost

    async def _check_limits(
        self, s: AsyncSession, guild_id: int, user_id: int, role_ids: Sequence[int], cost: int
    ) -> quota.QuotaStatus:
        """The member's limits for one more job of ``cost``: raises the refusal, else their quota status.

        A pending intake (a picture being fetched) counts as a job, and its reserved credits as spent."""
        member = {"b_guild": guild_id, "b_user": user_id}
        active = (await s.execute(_Hot.active_count, member)).scalar_one()
        pending, held = (await s.execute(_Hot.reserved, member)).one()
        active += pending
        if active >= self.config.max_queued_per_user:
            raise TooManyQueued(
                nmsg(
                    "You already have {n} video waiting or in progress (the limit is {limit}). "
                    "Wait for it to finish, or cancel it with /cancel.",
                    "You already have {n} videos waiting or in progress (the limit is {limit}). "
                    "Wait for one to finish, or cancel one with /cancel.",
                    active,
                    limit=Number(self.config.max_queued_per_user),
                )
            )
        st = await quota.status(
            s,
            guild_id,
            user_id,
            role_ids=role_ids,
            default_limit=self.config.default_limit,
            window_seconds=self.config.window_seconds,
        )
        if held:
            st = replace(st, balance=st.balance - int(held))
        if st.balance < cost:
            raise QuotaExceeded(_quota_message(st, cost), retry_at=st.next_credit_at)
        return st

    async def check_limits(
        self, guild_id: int, user_id: int, *, role_ids: Sequence[int] = (), cost: int = 1
    ) -> None:
        """Raise ``QuotaExceeded`` / ``TooManyQueued`` if a submit of ``cost`` would be refused now.

        A read-only early answer (a button that opens a form asks before the member types); ``submit``
        checks again under the account lock, so this never decides a charge.
        """
        async with self.db.sessionmaker() as s:
            await self._check_limits(s, guild_id, user_id, role_ids, cost)

    # ------------------------------------------------------------------ intakes
    async def open_intake(self, intake: Intake) -> None:
        """Record an acknowledged request before its slow steps (see ``Intake``). With ``intake.reserved``
        credits, the member's limits are checked and the credits held in the same transaction: raises
        ``QuotaExceeded`` / ``TooManyQueued`` (nothing written) when the request could not be queued."""
        async with self.db.transaction() as s:
            now = await quota.now(s)
            if intake.reserved:
                await quota.lock_member(s, intake.guild_id, intake.user_id)
                await self._check_limits(s, intake.guild_id, intake.user_id, intake.role_ids, intake.reserved)
            intake.created_at = now
            s.add(intake)

    async def write_intakes(self, opened: Sequence[Intake], closed: Sequence[int]) -> None:
        """Record intakes that hold nothing and close others, in one transaction (``IntakeBatcher``)."""
        async with self.db.transaction() as s:
            if opened:
                now = await quota.now(s)
                for intake in opened:
                    intake.created_at = now
                s.add_all(opened)
            if closed:
                await s.execute(delete(Intake).where(Intake.interaction_id.in_(closed)))

    async def close_intake(self, interaction_id: int) -> None:
        """The member was answered (or the request is refused): forget the intake, its token and its hold."""
        async with self.db.transaction() as s:
            await s.execute(delete(Intake).where(Intake.interaction_id == interaction_id))

    async def open_intakes(self) -> list[Intake]:
        """Every intake not closed (after a restart: the requests the last bot acknowledged and never
        answered), oldest first."""
        async with self.db.sessionmaker() as s:
            return list((await s.execute(select(Intake).order_by(Intake.created_at))).scalars())

    async def job_for_key(self, key: str, *, role_ids: Sequence[int] = ()) -> Submitted | None:
        """The job queued under an idempotency key, with its position and the member's balance now."""
        job = await self._by_key(key)
        if job is None:
            return None
        req = SubmitRequest(key, job.guild_id, job.channel_id, job.user_id, job.model, {}, role_ids=role_ids)
        return await self._submitted(job, created=False, req=req)

    async def _by_key(self, key: str, session: AsyncSession | None = None) -> Job | None:
        async def go(s: AsyncSession) -> Job | None:
            # Nearly always a new key: a light look first, the whole job only when there is one.
            found = (await s.execute(_Hot.id_by_key, {"b_key": key})).first()
            if found is None:
                return None
            return (await s.execute(select(Job).where(Job.id == found.id))).scalar_one()

        if session is not None:
            return await go(session)
        async with self.db.sessionmaker() as s:
            return await go(s)

    async def _submitted(
        self, job: Job, *, created: bool, req: SubmitRequest, session: AsyncSession | None = None
    ) -> Submitted:
        async def go(s: AsyncSession) -> Submitted:
            st = await quota.status(
                s,
                job.guild_id,
                job.user_id,
                role_ids=req.role_ids,
                default_limit=self.config.default_limit,
                window_seconds=self.config.window_seconds,
            )
            return Submitted(
                job=job, created=created, position=await self._position(s, job), balance=st.balance
            )

        if session is not None:
            return await go(session)
        async with self.db.sessionmaker() as s:
            return await go(s)

    # ------------------------------------------------------------------ worker side
    def _next_job_query(self, models: Iterable[str] | None) -> Select[tuple[int]]:
        """Fair share: fewest running jobs first, then the user served longest ago, then FIFO."""
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
        q = select(j.id).where(*_claimable(j, models))
        q = q.order_by(running, last_served.asc().nulls_first(), j.queued_at, j.id).limit(1)
        if self.db.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True, of=j)
        return q

    async def _anything_queued(self, models: tuple[str, ...]) -> bool:
        async with self.db.sessionmaker() as s:
            return (
                await s.execute(select(Job.id).where(*_claimable(Job, models)).limit(1))
            ).first() is not None

    async def claim(self, owner: str, models: Iterable[str] | None = None) -> Claim | None:
        """Atomically take the next job (see ``_next_job_query``), or None if nothing is queued."""
        # Building the fair-share query (three aliases, two subqueries) costs ~10 ms of Python per
        # claim: the whole statement is built once per model list (``_claim_statement``); SQLAlchemy
        # caches its compiled form.
        key = tuple(models or ())
        if key in self._idle and not await self._anything_queued(key):
            # An idle worker polls every second: a read (beside writers, in WAL) instead of the write
            # lock each time, which a submit would otherwise wait behind. Busy workers skip the look.
            return None
        async with self.db.transaction() as s:
            row = await self._take_next(s, owner, key)
        return self._claimed(row, owner, key)

    async def _take_next(self, s: AsyncSession, owner: str, key: tuple[str, ...]) -> Any:
        """The claim's one statement, in the caller's transaction: the claimed row, or None."""
        conn = await s.connection()
        return await conn.run_sync(self._take_next_sync, owner, key)

    def _take_next_sync(self, conn: Connection, owner: str, key: tuple[str, ...]) -> Any:
        stmt = self._next_id_cache.get(key)
        if stmt is None:
            stmt = self._next_id_cache[key] = _claim_statement(self._next_job_query(key).scalar_subquery())
        row = conn.execute(stmt, {"b_owner": owner, "b_lease": self.config.lease_seconds}).first()
        if row is not None:
            _notify_sync(conn, [row.id])
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

    @staticmethod
    def _fence(c: Claim) -> list[Any]:
        return [
            Job.id == c.job_id,
            Job.status == JobStatus.RUNNING.value,
            Job.lease_owner == c.owner,
            Job.attempts == c.attempt,
        ]

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
        stmt = _set(*self._fence(c), touch=False, **values).returning(
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
            res = await s.execute(_set(*self._fence(c)))
            if res.rowcount != 1:
                raise LeaseLost(f"job {c.job_id}: preview not stored, lease lost")
            await s.merge(
                JobPreview(
                    job_id=c.job_id, data=data, content_type=content_type, step=step, updated_at=db_now()
                )
            )

    async def complete(
        self,
        c: Claim,
        result: ResultData | Sequence[ResultData],
        *,
        missing_reason: str | None = None,
        had_previews: bool = True,
    ) -> str:
        """Store the video(s) and mark the job succeeded; returns the new status (see ``complete_and_claim``)."""
        status, _ = await self.complete_and_claim(
            c, result, missing_reason=missing_reason, had_previews=had_previews
        )
        return status

    async def complete_and_claim(
        self,
        c: Claim,
        result: ResultData | Sequence[ResultData],
        *,
        missing_reason: str | None = None,
        models: Iterable[str] | None = None,
        had_previews: bool = True,
    ) -> tuple[str, Claim | None]:
        """Store the video(s) and mark the job succeeded; returns the new status.

        ``result`` is one video, or the variations made (each with its ``variant``). When the job asked
        for more (``num_videos``) than were made, the share of the charge for the missing ones is
        refunded once (``partial_refund``) and ``error_message`` tells the member, with
        ``missing_reason`` (why they could not be made). The result rows are written first and the
        status last, so ``updated_at`` (the bot's feed) is stamped just before the commit, however
        large the videos. A job whose cancel flag was set ends ``cancelled`` and refunded instead,
        the render discarded (returns "cancelled"): a cancel always ends a job. Raises ``LeaseLost``
        if fenced out, ``ValueError`` for no video or variants that are not distinct.

        With ``models`` (a busy worker that goes on), the same transaction also claims the worker's
        next job (as ``claim(c.owner, models)`` would) and returns its ``Claim``: one commit between
        two jobs instead of two. Returns ``(status, next claim or None)``. ``had_previews=False``
        (the worker never tried to store a preview in this attempt) skips deleting the job's preview:
        every transition that stops a running job deletes it, so an earlier attempt left none.
        """
        results = [result] if isinstance(result, ResultData) else list(result)
        variants = [r.variant for r in results]
        if not results or len(set(variants)) != len(variants) or min(variants) < 0:
            raise ValueError(f"job {c.job_id}: complete() needs distinct videos, got variants {variants}")
        key = tuple(models or ()) if models is not None else None
        wanted = max(wanted_videos(c.params), len(results))
        taken: Any = None
        status = None
        if wanted == len(results):
            # Nearly always the job is still ours and not cancelled: the status change (fenced, and
            # only while the cancel flag is clear) says so without reading the row first, and the
            # whole transaction is one synchronous function (on SQLite, one hand-over to a thread).
            try:
                taken = await self.db.run_sync(self._complete_sync, c, results, key, had_previews)
                status = JobStatus.SUCCEEDED.value
            except _Recheck:  # fenced out or cancelled meanwhile: everything was rolled back
                pass
        if status is None:
            status, taken, wanted = await self._complete_checked(c, results, missing_reason, key)
        following = self._claimed(taken, c.owner, key) if key is not None else None
        if status == JobStatus.CANCELLED.value:
            log.info("job %s was cancelled while it was finishing: render discarded, refunded", c.job_id)
            return status, following
        log.info(
            "job %s succeeded (%d of %d video(s), %d bytes%s)",
            c.job_id,
            len(results),
            wanted,
            sum(len(r.video) for r in results),
            ", the missing ones refunded" if wanted > len(results) else "",
        )
        return status, following

    def _complete_sync(
        self,
        conn: Connection,
        c: Claim,
        results: list[ResultData],
        key: tuple[str, ...] | None,
        had_previews: bool,
    ) -> Any:
        """``complete_and_claim``'s common transaction: store, succeed, claim the next (its row or
        None). Raises ``_Recheck`` (rolling back) when the job is no longer ours or cancelled."""
        if not _store_results(conn, c, results, _Hot.succeed, drop_preview=had_previews):
            raise _Recheck()
        _notify_sync(conn, [c.job_id])
        return self._take_next_sync(conn, c.owner, key) if key is not None else None

    async def _complete_checked(
        self, c: Claim, results: list[ResultData], missing_reason: str | None, key: tuple[str, ...] | None
    ) -> tuple[str, Any, int]:
        """``complete_and_claim`` that locks and reads the row first: ``LeaseLost``, a cancel settled
        (cancelled, refunded), or the videos stored with the missing variations refunded. Returns
        (status, the claimed row or None, videos wanted)."""
        fence = {"b_id": c.job_id, "b_owner": c.owner, "b_attempt": c.attempt}
        async with self.db.transaction() as s:
            conn = await s.connection()
            row = (await conn.execute(_Hot.lock_running, fence)).first()
            if row is None:
                raise LeaseLost(f"job {c.job_id}: not completed, lease lost")
            wanted = max(wanted_videos(row.params), len(results))
            if row.cancel_requested:
                await self._end_cancelled(s, self._fence(c))
                status = JobStatus.CANCELLED.value
            else:
                succeed = _Hot.succeed
                missing = wanted - len(results)
                if missing:
                    credits = await quota.refund_part(s, c.job_id, missing, wanted, reason="variations")
                    succeed = succeed.values(
                        error_code="partial",
                        error_message=_partial_message(missing, wanted, credits, missing_reason),
                    )
                # The row is locked above: only a bug fails here.
                if not await conn.run_sync(_store_results, c, results, succeed, True):
                    raise LeaseLost(f"job {c.job_id}: not completed, lease lost")
                await self._notify(s, [c.job_id])
                status = JobStatus.SUCCEEDED.value
            taken = await self._take_next(s, c.owner, key) if key is not None else None
        return status, taken, wanted

    async def fail(self, c: Claim, message: str, *, code: str = "error", retryable: bool = False) -> str:
        """Record a failure. Retryable failures go back to the queue while attempts remain.

        A job whose cancel flag was set ends ``cancelled`` (refunded) instead, retryable or not.
        Returns the new status ("queued", "failed" or "cancelled"). Raises ``LeaseLost`` if fenced out.
        """
        async with self.db.transaction() as s:
            if await self._end_cancelled(s, [*self._fence(c), Job.cancel_requested.is_(True)]):
                log.info("job %s stopped (%s) after a cancel: cancelled, refunded", c.job_id, code)
                return JobStatus.CANCELLED.value
            if retryable:
                res = await s.execute(
                    _set(
                        *self._fence(c),
                        Job.attempts < Job.max_attempts,
                        status=JobStatus.QUEUED.value,
                        **LEASE_CLEARED,
                        error_message=message,
                        error_code=code,
                    )
                )
                if res.rowcount == 1:
                    await _drop_previews(s, [c.job_id])
                    await self._notify(s, [c.job_id])
                    log.warning("job %s failed (retryable, %s), queued again: %s", c.job_id, code, message)
                    return JobStatus.QUEUED.value
            await quota.refund(s, c.job_id, reason=code)
            res = await s.execute(
                _set(
                    *self._fence(c),
                    status=JobStatus.FAILED.value,
                    **LEASE_CLEARED,
                    finished_at=db_now(),
                    error_message=message,
                    error_code=code,
                )
            )
            if res.rowcount != 1:  # rolls the refund back
                raise LeaseLost(f"job {c.job_id}: not failed, lease lost")
            await _drop_previews(s, [c.job_id])
            await self._notify(s, [c.job_id])
        log.warning("job %s failed (%s), refunded: %s", c.job_id, code, message)
        return JobStatus.FAILED.value

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
                _set(
                    *self._fence(c),
                    status=JobStatus.QUEUED.value,
                    **LEASE_CLEARED,
                    attempts=Job.attempts - 1,
                    progress_step=0,
                )
            )
            if res.rowcount == 1:
                await _drop_previews(s, [c.job_id])
                await self._notify(s, [c.job_id])
        ok = res.rowcount == 1
        log.info("job %s released by %s: %s", c.job_id, c.owner, "queued again" if ok else "already gone")
        return ok

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
                    _set(
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
                await s.execute(_set(Job.id == row.id, error_message=str(crash_message(row.attempts))))
            requeued = (
                (
                    await s.execute(
                        _set(
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
            await _drop_previews(s, [*requeued, *(row.id for row in failed_rows)])
            await self._notify(s, [*requeued, *(row.id for row in failed_rows)])
        for job_id in requeued:
            log.warning("job %s: lease expired, queued again", job_id)
        for row in failed_rows:
            log.error("job %s: lease expired after %s attempts, failed and refunded", row.id, row.attempts)
        for job_id in cancelled:
            log.info("job %s: cancelled while its worker was gone; cancelled, refunded", job_id)
        return list(requeued), [*(row.id for row in failed_rows), *cancelled]

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
                    _set(
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
        await _drop_previews(s, ended)
        await self._notify(s, ended)
        return list(ended)

    async def _notify(self, s: AsyncSession, job_ids: Iterable[int]) -> None:
        """PostgreSQL: tell the bot at commit which jobs changed (``_notify_sync``)."""
        if self.db.dialect != "postgresql":
            return
        conn = await s.connection()
        await conn.run_sync(_notify_sync, list(job_ids))

    # ------------------------------------------------------------------ user / bot side
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
                    _set(Job.id == job_id, Job.status == JobStatus.RUNNING.value, cancel_requested=True)
                )
                state = "requested" if res.rowcount == 1 else "finished"
                if res.rowcount == 1:
                    await self._notify(s, [job_id])
            await s.refresh(job)
        log.info("job %s cancel by %s: %s", job_id, user_id, state)
        return CancelOutcome(state=state, job=job)

    async def set_status_message(self, job_id: int, message_id: int) -> None:
        async with self.db.transaction() as s:
            await s.execute(_set(Job.id == job_id, status_message_id=message_id))

    async def mark_delivered(self, job_id: int, message_id: int) -> bool:
        """succeeded → delivered, recording the posted message. False if it was not 'succeeded'."""
        async with self.db.transaction() as s:
            res = await s.execute(
                _set(
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
                _set(
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
                _set(
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
            await s.execute(_set(Job.id == job_id, touch=False, result_message_id=None))
            await s.execute(JobResult.__table__.delete().where(JobResult.job_id == job_id))
            await s.execute(JobInput.__table__.delete().where(JobInput.job_id == job_id))
        log.info("job %s: result deleted by its requester or a moderator; stored files removed", job_id)

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
                        _set(
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
                        _set(
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


#: The PostgreSQL channel the transitions the bot cares about notify (payload: job ids, comma-separated).
NOTIFY_CHANNEL = "videobot_jobs"

#: Leaving ``running``: the lease is gone.
LEASE_CLEARED: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


def _set(*where: Any, touch: bool = True, **values: Any) -> Update:
    """``UPDATE jobs SET … WHERE …``: every status change and lease write goes through here.

    ``touch`` bumps ``updated_at``, the bot's change feed; a bare lease renewal does not.
    """
    if touch:
        values.setdefault("updated_at", db_now())
    return update(Job).where(*where).values(**values).execution_options(synchronize_session=False)


_JOBS = Job.__table__
_INTAKES = Intake.__table__
#: A running job held by this lease (the Core form of ``Transitions._fence``, for ``_Hot``).
_FENCED = (
    _JOBS.c.id == bindparam("b_id"),
    _JOBS.c.status == JobStatus.RUNNING.value,
    _JOBS.c.lease_owner == bindparam("b_owner"),
    _JOBS.c.attempts == bindparam("b_attempt"),
)


def _notify_sync(conn: Connection, job_ids: Iterable[int]) -> None:
    """PostgreSQL: ``NOTIFY videobot_jobs, '<id>,<id>…'``, delivered to the bot at commit.

    The payload names the jobs, so the bot reads them whatever its feed cursor says (SQLite: the
    bot polls; its writers are serialised, so the cursor never passes an uncommitted change).
    """
    if conn.dialect.name != "postgresql":
        return
    ids = [str(i) for i in job_ids]
    for start in range(0, len(ids), 500):
        conn.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": NOTIFY_CHANNEL, "payload": ",".join(ids[start : start + 500])},
        )


def _store_results(
    conn: Connection, c: Claim, results: Sequence[ResultData], succeed: Update, drop_preview: bool
) -> bool:
    """Write a job's videos, then its status (``succeed``: fenced by ``c``, only while the cancel flag
    is clear; the status stays the last write, the feed's stamp), then drop its preview when
    ``drop_preview``. False (nothing to keep: the caller rolls back) when the status did not change."""
    conn.execute(
        _Hot.insert_result,
        [
            {
                "job_id": c.job_id,
                "variant": r.variant,
                "video": r.video,
                "poster": r.poster,
                "content_type": r.content_type,
                "size_bytes": len(r.video),
                "width": r.width,
                "height": r.height,
                "num_frames": r.num_frames,
                "fps": r.fps,
                "duration_s": r.duration_s,
                "encode_notes": r.encode_notes,
                "safety_score": r.safety_score,
                "safety_frame": r.safety_frame,
                "safety_model": r.safety_model,
            }
            for r in results
        ],
    )
    first = results[0]
    res = conn.execute(
        succeed,
        {
            "b_id": c.job_id,
            "b_owner": c.owner,
            "b_attempt": c.attempt,
            "b_generation_seconds": first.generation_seconds,
            "b_seconds_per_step": first.seconds_per_step,
            "b_peak_gpu_bytes": first.peak_gpu_bytes,
        },
    )
    if res.rowcount != 1:
        return False
    if drop_preview:
        conn.execute(_Hot.drop_preview, {"b_id": c.job_id})
    return True


class _Recheck(Exception):
    """``complete``'s status change found the job no longer ours or cancelled: roll back and look."""


class _Hot:
    """The statements a busy worker runs for every job, built once with bound parameters (Core, not
    ORM): building and compiling them again at each call cost more Python than SQLite spends."""

    lock_running = select(_JOBS.c.cancel_requested, _JOBS.c.params).where(*_FENCED).with_for_update()
    insert_result = insert(JobResult.__table__).values(created_at=db_now())
    succeed = (
        update(_JOBS)
        .where(*_FENCED, _JOBS.c.cancel_requested.is_(False))
        .values(
            status=JobStatus.SUCCEEDED.value,
            **LEASE_CLEARED,
            finished_at=db_now(),
            updated_at=db_now(),
            progress_step=_JOBS.c.progress_total,
            generation_seconds=bindparam("b_generation_seconds"),
            seconds_per_step=bindparam("b_seconds_per_step"),
            peak_gpu_bytes=bindparam("b_peak_gpu_bytes"),
        )
    )
    active_count = select(func.count()).where(
        _JOBS.c.guild_id == bindparam("b_guild"),
        _JOBS.c.user_id == bindparam("b_user"),
        _JOBS.c.status.in_(ACTIVE),
    )
    id_by_key = select(_JOBS.c.id).where(_JOBS.c.idempotency_key == bindparam("b_key"))
    #: A member's pending intakes that hold credits (a picture being fetched), and the credits held.
    reserved = select(func.count(), func.coalesce(func.sum(_INTAKES.c.reserved), 0)).where(
        _INTAKES.c.guild_id == bindparam("b_guild"),
        _INTAKES.c.user_id == bindparam("b_user"),
        _INTAKES.c.reserved > 0,
        _INTAKES.c.expires_at > db_now(),
    )
    unreserve = update(_INTAKES).where(_INTAKES.c.interaction_id == bindparam("b_id")).values(reserved=0)
    drop_preview = delete(JobPreview.__table__).where(JobPreview.__table__.c.job_id == bindparam("b_id"))


def _claim_statement(next_id: Any) -> Update:
    """Claim the job ``next_id`` selects (fair share) for ``b_owner`` with a lease of ``b_lease`` seconds."""
    return (
        update(_JOBS)
        .where(
            _JOBS.c.id == next_id,
            _JOBS.c.status == JobStatus.QUEUED.value,
            _JOBS.c.cancel_requested.is_(False),
        )
        .values(
            status=JobStatus.RUNNING.value,
            lease_owner=bindparam("b_owner"),
            lease_expires_at=db_now() + bindparam("b_lease", type_=Float),
            attempts=_JOBS.c.attempts + 1,
            started_at=db_now(),
            progress_step=0,
            progress_updated_at=db_now(),
            updated_at=db_now(),
        )
        .returning(
            _JOBS.c.id,
            _JOBS.c.attempts,
            _JOBS.c.model,
            _JOBS.c.params,
            _JOBS.c.upload_limit_bytes,
            _JOBS.c.lease_expires_at,
        )
    )


def _claimable(job: Any, models: Iterable[str] | None) -> list[ColumnElement[bool]]:
    """What a claim may take: queued, not cancelled, of one of ``models`` (any model when empty)."""
    where = [job.status == JobStatus.QUEUED.value, job.cancel_requested.is_(False)]
    model_list = list(models or [])
    if model_list:
        where.append(job.model.in_(model_list))
    return where


async def _drop_previews(s: AsyncSession, job_ids: Iterable[int]) -> None:
    """A job that stops running loses its preview (in the transaction that stops it)."""
    ids = list(job_ids)
    if ids:
        await s.execute(delete(JobPreview).where(JobPreview.job_id.in_(ids)))


def _partial_message(missing: int, wanted: int, credits: int, why: str | None) -> str:
    """What the result message says when only some of a job's variations were made: stored in
    English, shown in the server's language (``jobs.job_error`` recognises these messages)."""
    made = wanted - missing
    if why:
        what = nmsg(
            "{made} of {n} variation was made; {missing} could not be ({reason}).",
            "{made} of {n} variations were made; {missing} could not be ({reason}).",
            wanted,
            made=made,
            missing=missing,
            reason=why.rstrip("."),
        )
    else:
        what = nmsg(
            "{made} of {n} variation was made; {missing} could not be.",
            "{made} of {n} variations were made; {missing} could not be.",
            wanted,
            made=made,
            missing=missing,
        )
    back = (
        nmsg("{n} credit for them was refunded.", "{n} credits for them were refunded.", credits)
        if credits
        else None
    )
    return str(join(what, back))


def _quota_message(st: quota.QuotaStatus, cost: int) -> Joined:
    used = nmsg(
        "You have used your {n} video credit for now ({left} left).",
        "You have used your {n} video credits for now ({left} left).",
        st.limit + st.granted,
        left=Number(max(st.balance, 0)),
    )
    need = nmsg("This video costs {n} credit.", "This video costs {n} credits.", cost) if cost > 1 else None
    when = (
        # A Discord timestamp: each member's client shows "in 3 hours" in its own language.
        msg("Your next credit comes back {when}.", when=discord_timestamp(st.next_credit_at))
        if st.next_credit_at
        else None
    )
    return join(used, need, when)
