"""Read-only questions about jobs: one job, a member's jobs, queue positions, the bot's change feed,
what is still owed to Discord. The bot asks these instead of writing SQL of its own.

Queue positions follow the fair-share rule the workers claim by (``Transitions._next_job_query``):
fewest running jobs first, then the member served longest ago, then first come, first served.
``projected_order`` plays that rule forward, so the position a member is shown is the place the
claims will really give them, not their place in a first-in-first-out line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Float, Integer, and_, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from videobot import quota
from videobot.db import Database, db_now
from videobot.jobs.records import ACTIVE, ModelSpeed
from videobot.models import Job, JobInput, JobPreview, JobResult, JobStatus, WorkerHeartbeat


@dataclass(frozen=True)
class Waiting:
    """A queued job as the position rule sees it."""

    id: int
    user_id: int
    queued_at: float


def projected_order(
    waiting: Iterable[Waiting], running: dict[int, int], last_served: dict[int, float | None]
) -> list[int]:
    """The order in which the fair-share claim will take ``waiting`` jobs (one model's queue).

    Played forward one claim at a time, as on a one-GPU server: each pick makes its member the one
    served most recently; members' running counts are those of now.
    """
    left = sorted(waiting, key=lambda w: (w.queued_at, w.id))
    served = dict(last_served)
    order: list[int] = []
    tick = 0
    while left:

        def key(w: Waiting) -> tuple[int, int, float, float, int]:
            last = served.get(w.user_id)
            return (running.get(w.user_id, 0), 0 if last is None else 1, last or 0.0, w.queued_at, w.id)

        pick = min(left, key=key)
        left.remove(pick)
        order.append(pick.id)
        tick += 1
        served[pick.user_id] = _LATER + tick  # served now: after everything real, after earlier picks
    return order


#: The speed of a model is the mean of its last this many finished jobs (a moving average across jobs).
SPEED_WINDOW = 10
#: A worker not seen for this long does not count towards a queue's start estimate.
WORKER_SEEN_SECONDS = 120.0

#: Larger than any database clock reading: a projected pick is served after everything real.
_LATER = 1e12


class Queries:
    """The read-only half of ``JobQueue``; reads never take SQLite's write lock."""

    db: Database

    async def get(self, job_id: int) -> Job | None:
        async with self.db.sessionmaker() as s:
            return await s.get(Job, job_id)

    async def get_many(self, job_ids: Sequence[int]) -> list[Job]:
        if not job_ids:
            return []
        async with self.db.sessionmaker() as s:
            return list((await s.execute(select(Job).where(Job.id.in_(list(job_ids))))).scalars())

    async def get_result(self, job_id: int) -> JobResult | None:
        """The job's first video (its lowest variant), or None."""
        results = await self.get_results(job_id, limit=1)
        return results[0] if results else None

    async def get_results(self, job_id: int, *, limit: int | None = None) -> list[JobResult]:
        """Every video the job made, by variant (a variation that could not be made has none)."""
        async with self.db.sessionmaker() as s:
            stmt = select(JobResult).where(JobResult.job_id == job_id).order_by(JobResult.variant)
            if limit is not None:
                stmt = stmt.limit(limit)
            return list((await s.execute(stmt)).scalars())

    async def safety_score(self, job_id: int) -> float | None:
        """The job's safety score: the highest of its stored videos' (``videobot.safety``), read without
        their bytes; None when none was checked (or there is no result)."""
        async with self.db.sessionmaker() as s:
            stmt = select(func.max(JobResult.safety_score)).where(JobResult.job_id == job_id)
            return (await s.execute(stmt)).scalar_one_or_none()

    async def get_inputs(self, job_id: int) -> dict[str, bytes]:
        """A job's stored inputs by kind (``"image"``, ``"video"``); empty for a text-only job."""
        async with self.db.sessionmaker() as s:
            rows = (
                await s.execute(select(JobInput.kind, JobInput.data).where(JobInput.job_id == job_id))
            ).all()
        return {kind: bytes(data) for kind, data in rows}

    async def lineage(self, job_id: int, *, depth: int = 16) -> list[Job]:
        """The job and the jobs it came from (rerun, remix, extend, animate), nearest first, at most
        ``depth`` of them; empty if the job does not exist."""
        chain: list[Job] = []
        async with self.db.sessionmaker() as s:
            next_id: int | None = job_id
            while next_id is not None and len(chain) < depth:
                job = await s.get(Job, next_id)
                if job is None or any(j.id == job.id for j in chain):
                    break
                chain.append(job)
                next_id = job.parent_job_id
        return chain

    async def stored_files(self, job_id: int) -> frozenset[str]:
        """What is still stored for a job, without reading the bytes: ``"result"`` (its video) and
        its input kinds (``"image"``, ``"video"``); empty once purged."""
        async with self.db.sessionmaker() as s:
            kinds = set((await s.execute(select(JobInput.kind).where(JobInput.job_id == job_id))).scalars())
            if (await s.execute(select(JobResult.job_id).where(JobResult.job_id == job_id))).first():
                kinds.add("result")
        return frozenset(kinds)

    async def by_result_message(self, message_id: int) -> Job | None:
        """The job whose result was posted as ``message_id`` (reactions and buttons on results)."""
        async with self.db.sessionmaker() as s:
            return (
                await s.execute(select(Job).where(Job.result_message_id == message_id).limit(1))
            ).scalar_one_or_none()

    async def seconds_since_child(self, parent_id: int, user_id: int, kind: str) -> float | None:
        """Seconds (database clock) since ``user_id`` last queued a ``kind`` of ``parent_id``; None if
        never (a reaction's cooldown: a sliding window, not a clock-aligned bucket)."""
        async with self.db.sessionmaker() as s:
            return (
                await s.execute(
                    select(db_now() - func.max(Job.created_at)).where(
                        Job.parent_job_id == parent_id, Job.user_id == user_id, Job.kind == kind
                    )
                )
            ).scalar()

    async def db_now(self) -> float:
        """The database clock (Unix seconds)."""
        async with self.db.sessionmaker() as s:
            return await quota.now(s)

    async def preview_steps(self, job_ids: Sequence[int]) -> dict[int, int]:
        """The step each of these jobs' latest preview shows (jobs without one are left out)."""
        if not job_ids:
            return {}
        async with self.db.sessionmaker() as s:
            rows = await s.execute(
                select(JobPreview.job_id, JobPreview.step).where(JobPreview.job_id.in_(list(job_ids)))
            )
            return {r.job_id: r.step for r in rows}

    async def get_preview(self, job_id: int) -> JobPreview | None:
        """A running job's latest preview (``data``, ``content_type``, ``step``), if its worker made one."""
        async with self.db.sessionmaker() as s:
            return await s.get(JobPreview, job_id)

    # ------------------------------------------------------------------ speed and estimates
    async def speeds(self) -> dict[str, ModelSpeed]:
        """Per model: mean seconds per step and per job over its last ``SPEED_WINDOW`` finished jobs."""
        async with self.db.sessionmaker() as s:
            return await self._speeds(s)

    async def _speeds(self, s: AsyncSession) -> dict[str, ModelSpeed]:
        recent = (
            select(
                Job.model,
                Job.seconds_per_step,
                Job.generation_seconds,
                func.row_number().over(partition_by=Job.model, order_by=Job.finished_at.desc()).label("n"),
            )
            .where(Job.seconds_per_step.is_not(None), Job.finished_at.is_not(None))
            .subquery()
        )
        rows = (
            await s.execute(
                select(
                    recent.c.model,
                    func.avg(recent.c.seconds_per_step),
                    func.avg(recent.c.generation_seconds),
                    func.count(),
                )
                .where(recent.c.n <= SPEED_WINDOW)
                .group_by(recent.c.model)
            )
        ).all()
        return {
            model: ModelSpeed(seconds_per_step=float(per_step), seconds_per_job=float(per_job or 0.0), jobs=n)
            for model, per_step, per_job, n in rows
        }

    async def start_estimates(self, positions: dict[int, int] | None = None) -> dict[int, float]:
        """Seconds until each queued job is expected to start (only for models with measured speed):
        what is left of the running jobs of its model plus the jobs ahead of it, shared among the
        workers that serve the model. ``positions``: from ``positions()`` if the caller has them."""
        async with self.db.sessionmaker() as s:
            if positions is None:
                positions = await self._positions(s)
            if not positions:
                return {}
            speeds = await self._speeds(s)
            now = await quota.now(s)
            queued = dict(
                (await s.execute(select(Job.id, Job.model).where(Job.id.in_(list(positions))))).all()
            )
            running = (
                await s.execute(
                    select(Job.model, Job.progress_step, Job.progress_total).where(
                        Job.status == JobStatus.RUNNING.value
                    )
                )
            ).all()
            workers = (
                await s.execute(
                    select(WorkerHeartbeat.models).where(WorkerHeartbeat.seen_at > now - WORKER_SEEN_SECONDS)
                )
            ).scalars()
            served: dict[str, int] = {}
            for models in workers:
                for name in models or []:
                    served[name] = served.get(name, 0) + 1
        busy: dict[str, float] = {}
        for model, step, total in running:
            speed = speeds.get(model)
            if speed is not None:
                left = speed.seconds_per_step * max((total or 0) - (step or 0), 0)
                busy[model] = busy.get(model, 0.0) + left
        estimates: dict[int, float] = {}
        for job_id, place in positions.items():
            model = queued.get(job_id)
            speed = speeds.get(model) if model is not None else None
            if speed is None or model is None:
                continue
            ahead = busy.get(model, 0.0) + (place - 1) * speed.seconds_per_job
            estimates[job_id] = ahead / max(served.get(model, 1), 1)
        return estimates

    # ------------------------------------------------------------------ queue positions
    async def _positions(self, s: AsyncSession, models: Iterable[str] | None = None) -> dict[int, int]:
        """1-based projected claim position of every queued job, per model (see ``projected_order``)."""
        q = select(Job.id, Job.user_id, Job.model, Job.queued_at).where(Job.status == JobStatus.QUEUED.value)
        model_list = list(models) if models is not None else None
        if model_list is not None:
            q = q.where(Job.model.in_(model_list))
        rows = (await s.execute(q)).all()
        if not rows:
            return {}
        users = list({r.user_id for r in rows})
        running = dict(
            (
                await s.execute(
                    select(Job.user_id, func.count())
                    .where(Job.user_id.in_(users), Job.status == JobStatus.RUNNING.value)
                    .group_by(Job.user_id)
                )
            ).all()
        )
        last_served = dict(
            (
                await s.execute(
                    select(Job.user_id, func.max(Job.started_at))
                    .where(Job.user_id.in_(users))
                    .group_by(Job.user_id)
                )
            ).all()
        )
        by_model: dict[str, list[Waiting]] = {}
        for r in rows:
            by_model.setdefault(r.model, []).append(Waiting(r.id, r.user_id, r.queued_at))
        positions: dict[int, int] = {}
        for waiting in by_model.values():
            for place, job_id in enumerate(projected_order(waiting, running, last_served), start=1):
                positions[job_id] = place
        return positions

    async def _position(self, s: AsyncSession, job: Job) -> int:
        """1-based projected place of ``job`` in its model's queue (0 if it is not queued)."""
        if job.status != JobStatus.QUEUED.value:
            return 0
        return (await self._positions(s, [job.model])).get(job.id, 0)

    async def position(self, job: Job) -> int:
        async with self.db.sessionmaker() as s:
            return await self._position(s, job)

    async def positions(self) -> dict[int, int]:
        """Projected positions of all queued jobs (job id → 1-based place in its model's queue)."""
        async with self.db.sessionmaker() as s:
            return await self._positions(s)

    async def user_jobs(self, guild_id: int, user_id: int) -> list[tuple[Job, int]]:
        """A member's queued and running jobs with their queue positions (0 = running)."""
        async with self.db.sessionmaker() as s:
            jobs = list(
                (
                    await s.execute(
                        select(Job)
                        .where(Job.guild_id == guild_id, Job.user_id == user_id, Job.status.in_(ACTIVE))
                        .order_by(Job.id)
                    )
                ).scalars()
            )
            if not any(j.status == JobStatus.QUEUED.value for j in jobs):
                return [(job, 0) for job in jobs]
            positions = await self._positions(s, {j.model for j in jobs})
            return [(job, positions.get(job.id, 0)) for job in jobs]

    async def queue_length(self, model: str | None = None) -> int:
        async with self.db.sessionmaker() as s:
            q = select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED.value)
            if model:
                q = q.where(Job.model == model)
            return int((await s.execute(q)).scalar_one())

    # ------------------------------------------------------------------ the bot's feed
    async def changes_since(self, since: float, *, limit: int = 200) -> list[tuple[int, float]]:
        """``(id, updated_at)`` of the jobs updated after ``since`` (database clock), oldest change first:
        the bot's event feed. Only ids and stamps: the feed loads (``get_many``) just the jobs it has
        not seen in that state, since its overlap re-reads the last seconds of changes every time."""
        async with self.db.sessionmaker() as s:
            rows = await s.execute(_CHANGES, {"b_since": since, "b_limit": limit})
            return [(int(r.id), float(r.updated_at)) for r in rows]

    async def without_status_message(self, *, created_after: float, limit: int = 1000) -> list[Job]:
        """Jobs whose public status message is not recorded yet (oldest first): queued and running
        ones, and any created after ``created_after`` (database clock; one that ended meanwhile still
        gets its status message, with its final text). The bot posts it after answering, so a restart
        in between must still post it."""
        async with self.db.sessionmaker() as s:
            return list(
                (
                    await s.execute(
                        select(Job)
                        .where(
                            or_(Job.status.in_(ACTIVE), Job.created_at >= created_after),
                            Job.status_message_id.is_(None),
                        )
                        .order_by(Job.id)
                        .limit(limit)
                    )
                ).scalars()
            )

    async def owed(self, *, limit: int = 1000) -> list[Job]:
        """Everything the bot still owes Discord, whatever the feed said: results not posted yet,
        failures and cancellations not told yet, and live jobs whose status message needs updates."""
        async with self.db.sessionmaker() as s:
            return list(
                (
                    await s.execute(
                        select(Job)
                        .where(
                            or_(
                                Job.status == JobStatus.SUCCEEDED.value,
                                and_(
                                    Job.status.in_((JobStatus.FAILED.value, JobStatus.CANCELLED.value)),
                                    Job.notified_at.is_(None),
                                ),
                                # Held results whose review post and notice are not done yet.
                                and_(Job.status == JobStatus.HELD.value, Job.notified_at.is_(None)),
                                and_(Job.status.in_(ACTIVE), Job.status_message_id.is_not(None)),
                            )
                        )
                        .order_by(Job.id)
                        .limit(limit)
                    )
                ).scalars()
            )


_JOBS = Job.__table__
#: Built once: the feed runs it at every tick (``changes_since``).
_CHANGES = (
    select(_JOBS.c.id, _JOBS.c.updated_at)
    .where(_JOBS.c.updated_at > bindparam("b_since", type_=Float))
    .order_by(_JOBS.c.updated_at, _JOBS.c.id)
    .limit(bindparam("b_limit", type_=Integer))
)
