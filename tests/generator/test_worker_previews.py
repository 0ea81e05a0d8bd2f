"""The real worker on the tiny model stores live previews in the database while a job runs, overwrites
them in place, and the transition that ends the job removes them; previews are fenced by the lease; the
measured speed gives the queue's start estimates."""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from generator.worker import Worker
from tests.generator.test_worker import settings_for, submit
from videobot.db import Database
from videobot.errors import LeaseLost
from videobot.jobs import JobQueue, QueueConfig
from videobot.jobs.transitions import MAX_PREVIEW_BYTES
from videobot.migrate import upgrade
from videobot.models import JobPreview


@pytest.fixture
async def qdb(tmp_path: Path, tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    shutil.copytree(tiny_model_dir, data / "models" / "tiny")
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    db = Database(url)
    yield db, data
    await db.dispose()


async def preview_rows(db: Database) -> int:
    async with db.sessionmaker() as s:
        return int((await s.execute(select(func.count()).select_from(JobPreview))).scalar_one())


async def watch(
    worker: Worker, q: JobQueue, job_id: int, until: set[str], timeout: float = 90
) -> list[tuple]:
    """Run the worker until the job reaches ``until``; every preview seen on the way (step, bytes)."""
    task = asyncio.create_task(worker.run())
    seen: list[tuple] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            row = await q.get_preview(job_id)
            if row is not None and (not seen or seen[-1][0] != row.step):
                seen.append((row.step, bytes(row.data), row.content_type))
            job = await q.get(job_id)
            assert job is not None
            if job.status in until:
                return seen
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} stuck in {job.status}")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def test_previews_are_stored_while_running_and_removed_when_the_job_ends(qdb, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    s = settings_for(data, db.url, VIDEOBOT_TEST_STEP_DELAY=1.0, VIDEOBOT_PREVIEW_SECONDS=0.5)
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q, steps=9)
    worker = Worker(s, q, tiny_pipeline, worker_id="w1", models=["tiny"])
    seen = await watch(worker, q, job_id, {"succeeded", "failed"})
    assert (await q.get(job_id)).status == "succeeded"  # type: ignore[union-attr]
    assert len(seen) >= 2, seen  # overwritten in place: one row, newer steps
    assert [step for step, _, _ in seen] == sorted({step for step, _, _ in seen})
    for _, blob, content_type in seen:
        assert content_type == "image/webp"
        Image.open(io.BytesIO(blob)).load()
    assert await preview_rows(db) == 0
    assert await q.preview_steps([job_id]) == {}


async def test_a_cancelled_job_loses_its_preview(qdb, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    s = settings_for(data, db.url, VIDEOBOT_TEST_STEP_DELAY=1.0, VIDEOBOT_PREVIEW_SECONDS=0.1)
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q, steps=20)
    worker = Worker(s, q, tiny_pipeline, worker_id="w1", models=["tiny"])
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(400):
            if await q.preview_steps([job_id]):
                break
            await asyncio.sleep(0.05)
        assert await q.preview_steps([job_id]), "no preview within 20 s"
        await q.cancel(job_id, user_id=1)
        for _ in range(400):
            if (await q.get(job_id)).status == "cancelled":  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    assert (await q.get(job_id)).status == "cancelled"  # type: ignore[union-attr]
    assert await preview_rows(db) == 0


async def test_previews_off_stores_none(qdb, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    s = settings_for(data, db.url, VIDEOBOT_TEST_STEP_DELAY=0.6, VIDEOBOT_PREVIEW_SECONDS=0)
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q, steps=5)
    worker = Worker(s, q, tiny_pipeline, worker_id="w1", models=["tiny"])
    assert await watch(worker, q, job_id, {"succeeded", "failed"}) == []


async def test_a_preview_is_fenced_by_the_lease_and_capped(qdb) -> None:  # type: ignore[no-untyped-def]
    db, _ = qdb
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q)
    claim = await q.claim("w1")
    assert claim is not None and claim.job_id == job_id
    await q.put_preview(claim, 1, b"one", "image/webp")
    await q.put_preview(claim, 2, b"two", "image/webp")
    row = await q.get_preview(job_id)
    assert row is not None and (row.step, bytes(row.data)) == (2, b"two")
    with pytest.raises(ValueError):
        await q.put_preview(claim, 3, b"x" * (MAX_PREVIEW_BYTES + 1), "image/webp")
    stale = claim.__class__(**{**claim.__dict__, "attempt": claim.attempt + 1})
    with pytest.raises(LeaseLost):
        await q.put_preview(stale, 3, b"three", "image/webp")
    assert await q.release(claim)
    assert await q.get_preview(job_id) is None


async def test_speed_and_start_estimates_come_from_finished_jobs(qdb, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    s = settings_for(data, db.url, VIDEOBOT_TEST_STEP_DELAY=0.2, VIDEOBOT_PREVIEW_SECONDS=0)
    q = JobQueue(db, QueueConfig(lease_seconds=5, max_queued_per_user=10))
    assert await q.speeds() == {}
    first = await submit(q, steps=3)
    worker = Worker(s, q, tiny_pipeline, worker_id="w1", models=["tiny"])
    await watch(worker, q, first, {"succeeded"})
    speed = (await q.speeds())["tiny"]
    done = await q.get(first)
    assert (
        done is not None
        and speed.jobs == 1
        and speed.seconds_per_step == pytest.approx(done.seconds_per_step)
    )
    a, b = await submit(q, user=2), await submit(q, user=3)
    estimates = await q.start_estimates()
    # The first in line waits for nothing that is measured; the second waits one job.
    assert estimates[a] == pytest.approx(0.0)
    assert estimates[b] == pytest.approx(speed.seconds_per_job)


@pytest.mark.parametrize("offload", ["model", "sequential", "group"])
async def test_an_offloaded_worker_still_stores_previews(qdb, offload: str) -> None:  # type: ignore[no-untyped-def]
    """The default GPU install offloads its model: its jobs used to show no preview at all."""
    from generator.preview import PROJECTION
    from generator.worker import load_pipeline

    db, data = qdb
    s = settings_for(
        data, db.url, VIDEOBOT_TEST_STEP_DELAY=0.6, VIDEOBOT_PREVIEW_SECONDS=0.3, VIDEOBOT_OFFLOAD=offload
    )
    pipeline = await asyncio.to_thread(load_pipeline, s)
    assert pipeline.preview_plan().method == PROJECTION
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q, steps=6)
    worker = Worker(s, q, pipeline, worker_id="w1", models=["tiny"])
    seen = await watch(worker, q, job_id, {"succeeded", "failed"})
    assert (await q.get(job_id)).status == "succeeded"  # type: ignore[union-attr]
    assert seen, "no preview stored"
    for _, blob, content_type in seen:
        assert content_type == "image/webp"
        Image.open(io.BytesIO(blob)).load()
