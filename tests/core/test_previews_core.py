"""Previews and speed estimates in the job queue, on real databases (SQLite file; PostgreSQL when
configured): a preview is fenced by the lease, overwritten in place, and gone after every transition
that stops the job; the model's speed and the queue's start estimates come from finished jobs."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from sqlalchemy import func, select, update

from videobot.db import Database
from videobot.errors import LeaseLost
from videobot.jobs import JobQueue, QueueConfig, ResultData, SubmitRequest
from videobot.jobs.transitions import MAX_PREVIEW_BYTES
from videobot.models import Job, JobPreview

_keys = itertools.count()


def req(user: int) -> SubmitRequest:
    return SubmitRequest(
        idempotency_key=f"p{next(_keys)}",
        guild_id=1,
        channel_id=2,
        user_id=user,
        model="tiny",
        params={"prompt": "a fox", "num_inference_steps": 10},
    )


def result(per_step: float, took: float) -> ResultData:
    return ResultData(
        video=b"\x00mp4", width=32, height=32, num_frames=9, fps=8, duration_s=1.1,
        seconds_per_step=per_step, generation_seconds=took,
    )  # fmt: skip


async def previews(db: Database) -> int:
    async with db.sessionmaker() as s:
        return int((await s.execute(select(func.count()).select_from(JobPreview))).scalar_one())


async def test_a_preview_is_overwritten_fenced_and_capped(db: Database) -> None:
    q = JobQueue(db, QueueConfig(max_queued_per_user=10))
    job = (await q.submit(req(1))).job
    c = await q.claim("w1")
    assert c is not None and c.job_id == job.id
    await q.put_preview(c, 1, b"one", "image/webp")
    await q.put_preview(c, 3, b"three", "image/webp")
    row = await q.get_preview(job.id)
    assert row is not None and (row.step, bytes(row.data), row.content_type) == (3, b"three", "image/webp")
    assert await q.preview_steps([job.id, job.id + 99]) == {job.id: 3}
    assert await previews(db) == 1
    with pytest.raises(ValueError):
        await q.put_preview(c, 4, b"x" * (MAX_PREVIEW_BYTES + 1), "image/webp")
    with pytest.raises(LeaseLost):
        await q.put_preview(replace(c, owner="w2"), 4, b"four", "image/webp")
    assert (await q.get_preview(job.id)).step == 3  # type: ignore[union-attr]


@pytest.mark.parametrize("end", ["complete", "fail", "retry", "cancel", "release", "lease expired"])
async def test_every_transition_that_stops_a_job_removes_its_preview(db: Database, end: str) -> None:
    q = JobQueue(db, QueueConfig(max_queued_per_user=10, lease_seconds=60))
    job = (await q.submit(req(1))).job
    c = await q.claim("w1")
    assert c is not None
    await q.put_preview(c, 2, b"pic", "image/webp")
    if end == "complete":
        assert await q.complete(c, result(0.5, 6.0)) == "succeeded"
    elif end == "fail":
        assert await q.fail(c, "broken", retryable=False) == "failed"
    elif end == "retry":
        assert await q.fail(c, "blip", retryable=True) == "queued"
    elif end == "cancel":
        assert (await q.cancel(job.id, user_id=1)).state == "requested"
        assert await q.get_preview(job.id) is not None  # still running until the worker stops
        await q.acknowledge_cancel(c)
    elif end == "release":
        assert await q.release(c)
    else:
        async with db.transaction() as s:
            await s.execute(update(Job).where(Job.id == job.id).values(lease_expires_at=0.0))
        requeued, _ = await q.recover_stale()
        assert requeued == [job.id]
    assert await q.get_preview(job.id) is None
    assert await previews(db) == 0


async def test_speeds_are_a_moving_average_and_give_start_estimates(db: Database) -> None:
    q = JobQueue(db, QueueConfig(max_queued_per_user=20))
    assert await q.speeds() == {}
    for per_step in (1.0, 2.0, 3.0):
        await q.submit(req(1))
        c = await q.claim("w1")
        assert c is not None
        await q.complete(c, result(per_step, per_step * 10 + 5))
    speed = (await q.speeds())["tiny"]
    assert (speed.jobs, speed.seconds_per_step, speed.seconds_per_job) == (
        3,
        pytest.approx(2.0),
        pytest.approx(25.0),
    )
    await q.worker_seen("w1", ["tiny"])
    running = (await q.submit(req(2))).job
    c = await q.claim("w1")
    assert c is not None and c.job_id == running.id
    await q.heartbeat(c, (4, 10))  # 6 steps left of 2 s each
    a, b = (await q.submit(req(3))).job, (await q.submit(req(4))).job
    estimates = await q.start_estimates()
    assert estimates[a.id] == pytest.approx(12.0)
    assert estimates[b.id] == pytest.approx(12.0 + 25.0)
    await q.worker_seen("w2", ["tiny"])  # two workers share the wait
    assert (await q.start_estimates())[b.id] == pytest.approx((12.0 + 25.0) / 2)
