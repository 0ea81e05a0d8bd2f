"""Submitting: a job queued and charged in one transaction (alone or in a batch), the member's limits,
and the intake records of requests acknowledged before their slow steps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from videobot import quota
from videobot.errors import QuotaExceeded, TooManyQueued
from videobot.i18n import Joined, Number, discord_timestamp, join, msg, nmsg
from videobot.jobs.changes import Changes
from videobot.jobs.records import SubmitRequest, Submitted
from videobot.jobs.statements import Hot
from videobot.models import Intake, Job, JobInput, JobStatus
from videobot.presets import loop_passes

log = logging.getLogger(__name__)

INPUT_CONTENT_TYPES = {"image": "image/png", "end_image": "image/png", "video": "video/mp4"}
#: A batch result not known until the batch's positions are computed.
_PENDING = RuntimeError("pending")


class Submitting(Changes):
    """Queue and charge; record and close intakes."""

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
            await s.execute(Hot.unreserve, {"b_id": req.intake_id})
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
            progress_total=int(req.params.get("num_inference_steps") or 0) * loop_passes(req.params),
            upload_limit_bytes=req.upload_limit_bytes,
            application_id=req.application_id,
            interaction_token=req.interaction_token,
            interaction_expires_at=(st.now + req.interaction_ttl) if req.interaction_token else None,
            reply_to_message_id=req.reply_to_message_id,
            locale=req.locale,
            channel_nsfw=req.channel_nsfw,
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
        active = (await s.execute(Hot.active_count, member)).scalar_one()
        pending, held = (await s.execute(Hot.reserved, member)).one()
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
            found = (await s.execute(Hot.id_by_key, {"b_key": key})).first()
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
