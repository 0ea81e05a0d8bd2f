"""The SQL of the job transitions: the one ``UPDATE jobs`` helper every status change goes through, the
lease fence, the claim statement, the PostgreSQL ``NOTIFY``, and ``Hot``: the statements a busy worker
or a burst of ``/video`` runs for every job, built once with bound parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Update,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from videobot.db import db_now
from videobot.jobs.records import ACTIVE
from videobot.models import Intake, Job, JobPreview, JobResult, JobStatus

#: The PostgreSQL channel the transitions the bot cares about notify (payload: job ids, comma-separated).
NOTIFY_CHANNEL = "videobot_jobs"

#: Leaving ``running``: the lease is gone.
LEASE_CLEARED: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


def update_jobs(*where: Any, touch: bool = True, **values: Any) -> Update:
    """``UPDATE jobs SET … WHERE …``: every status change and lease write goes through here.

    ``touch`` bumps ``updated_at``, the bot's change feed; a bare lease renewal does not.
    """
    if touch:
        values.setdefault("updated_at", db_now())
    return update(Job).where(*where).values(**values).execution_options(synchronize_session=False)


JOBS = Job.__table__
INTAKES = Intake.__table__
#: A running job held by this lease (the Core form of ``Changes._fence``, for ``Hot``).
FENCED = (
    JOBS.c.id == bindparam("b_id"),
    JOBS.c.status == JobStatus.RUNNING.value,
    JOBS.c.lease_owner == bindparam("b_owner"),
    JOBS.c.attempts == bindparam("b_attempt"),
)


def notify_sync(conn: Connection, job_ids: Iterable[int]) -> None:
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


class Hot:
    """The statements a busy worker runs for every job, built once with bound parameters (Core, not
    ORM): building and compiling them again at each call cost more Python than SQLite spends."""

    lock_running = select(JOBS.c.cancel_requested, JOBS.c.params).where(*FENCED).with_for_update()
    insert_result = insert(JobResult.__table__).values(created_at=db_now())
    succeed = (
        update(JOBS)
        .where(*FENCED, JOBS.c.cancel_requested.is_(False))
        .values(
            status=JobStatus.SUCCEEDED.value,
            **LEASE_CLEARED,
            finished_at=db_now(),
            updated_at=db_now(),
            progress_step=JOBS.c.progress_total,
            generation_seconds=bindparam("b_generation_seconds"),
            seconds_per_step=bindparam("b_seconds_per_step"),
            peak_gpu_bytes=bindparam("b_peak_gpu_bytes"),
        )
    )
    active_count = select(func.count()).where(
        JOBS.c.guild_id == bindparam("b_guild"),
        JOBS.c.user_id == bindparam("b_user"),
        JOBS.c.status.in_(ACTIVE),
    )
    id_by_key = select(JOBS.c.id).where(JOBS.c.idempotency_key == bindparam("b_key"))
    #: A member's pending intakes that hold credits (a picture being fetched), and the credits held.
    reserved = select(func.count(), func.coalesce(func.sum(INTAKES.c.reserved), 0)).where(
        INTAKES.c.guild_id == bindparam("b_guild"),
        INTAKES.c.user_id == bindparam("b_user"),
        INTAKES.c.reserved > 0,
        INTAKES.c.expires_at > db_now(),
    )
    unreserve = update(INTAKES).where(INTAKES.c.interaction_id == bindparam("b_id")).values(reserved=0)
    drop_preview = delete(JobPreview.__table__).where(JobPreview.__table__.c.job_id == bindparam("b_id"))


def claim_statement(next_id: Any) -> Update:
    """Claim the job ``next_id`` selects (fair share) for ``b_owner`` with a lease of ``b_lease`` seconds."""
    return (
        update(JOBS)
        .where(
            JOBS.c.id == next_id,
            JOBS.c.status == JobStatus.QUEUED.value,
            JOBS.c.cancel_requested.is_(False),
        )
        .values(
            status=JobStatus.RUNNING.value,
            lease_owner=bindparam("b_owner"),
            lease_expires_at=db_now() + bindparam("b_lease", type_=Float),
            attempts=JOBS.c.attempts + 1,
            started_at=db_now(),
            progress_step=0,
            progress_updated_at=db_now(),
            updated_at=db_now(),
        )
        .returning(
            JOBS.c.id,
            JOBS.c.attempts,
            JOBS.c.model,
            JOBS.c.params,
            JOBS.c.upload_limit_bytes,
            JOBS.c.lease_expires_at,
        )
    )


def claimable(job: Any, models: Iterable[str] | None) -> list[ColumnElement[bool]]:
    """What a claim may take: queued, not cancelled, of one of ``models`` (any model when empty)."""
    where = [job.status == JobStatus.QUEUED.value, job.cancel_requested.is_(False)]
    model_list = list(models or [])
    if model_list:
        where.append(job.model.in_(model_list))
    return where


async def drop_previews(s: AsyncSession, job_ids: Iterable[int]) -> None:
    """A job that stops running loses its preview (in the transaction that stops it)."""
    ids = list(job_ids)
    if ids:
        await s.execute(delete(JobPreview).where(JobPreview.job_id.in_(ids)))
