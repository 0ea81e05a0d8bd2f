"""The worker on the tiny model and a real SQLite file: jobs to videos, cancel, OOM, SIGTERM, kill -9."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from generator.encode import probe_mp4
from generator.worker import Worker, _Running
from tests.helpers import FakeClock, at
from videobot.db import Database
from videobot.jobs import JobQueue, QueueConfig, SubmitRequest
from videobot.migrate import upgrade
from videobot.models import JobResult, LedgerEntry, WorkerHeartbeat
from videobot.presets import PRESETS, plan
from videobot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TINY = PRESETS["tiny"]


@pytest.fixture
async def qdb(tmp_path: Path, tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    shutil.copytree(tiny_model_dir, data / "models" / "tiny")
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    db = Database(url)
    yield db, data
    await db.dispose()


def settings_for(data: Path, url: str, **kw) -> Settings:  # type: ignore[no-untyped-def]
    base = dict(
        VIDEOBOT_DATA_DIR=str(data),
        DATABASE_URL=url,
        VIDEOBOT_MODEL="tiny",
        VIDEOBOT_POLL_SECONDS=0.05,
        VIDEOBOT_HEARTBEAT_SECONDS=0.5,
        VIDEOBOT_LEASE_SECONDS=5,
        VIDEOBOT_SHUTDOWN_GRACE_SECONDS=1,
    )
    base.update({k: v for k, v in kw.items()})
    return Settings(_env_file=None, **base)  # type: ignore[arg-type, call-arg]


_n = iter(range(10**6))


async def submit(q: JobQueue, user: int = 1, *, steps: int | None = None, seed: int = 7, **params) -> int:  # type: ignore[no-untyped-def]
    p = plan(TINY, "a fox running through snow", seed=seed).to_dict()
    if steps:
        p["num_inference_steps"] = steps
    p.update(params)
    sub = await q.submit(
        SubmitRequest(
            idempotency_key=f"t{next(_n)}", guild_id=1, channel_id=2, user_id=user, model="tiny", params=p
        )
    )
    return sub.job.id


async def run_until(worker: Worker, q: JobQueue, job_id: int, statuses: set[str], timeout: float = 60) -> str:
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = await q.get(job_id)
            assert job is not None
            if job.status in statuses:
                return job.status
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} stuck in {job.status}")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def refunds(db: Database, job_id: int) -> int:
    async with db.sessionmaker() as s:
        rows = (
            await s.execute(
                select(LedgerEntry).where(LedgerEntry.job_id == job_id, LedgerEntry.kind == "refund")
            )
        ).all()
    return len(rows)


async def test_job_becomes_a_playable_h264_video(qdb, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    s = settings_for(data, db.url)
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q)
    worker = Worker(s, q, tiny_pipeline, worker_id="w1", models=["tiny"])
    assert await run_until(worker, q, job_id, {"succeeded", "failed"}) == "succeeded"
    result = await q.get_result(job_id)
    assert result is not None
    info = probe_mp4(result.video)
    params = plan(TINY, "a fox running through snow", seed=7)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["faststart"]
    assert (info["width"], info["height"], info["num_frames"]) == (
        params.width,
        params.height,
        params.num_frames,
    )
    assert round(float(info["fps"])) == params.fps
    assert result.poster and result.poster[:2] == b"\xff\xd8"  # a JPEG poster for embeds
    job = await q.get(job_id)
    assert job is not None and job.progress_step == job.progress_total == params.num_inference_steps
    assert await refunds(db, job_id) == 0


async def test_cancel_mid_run_stops_within_one_step_of_the_heartbeat_and_refunds_once(
    qdb, tiny_pipeline
) -> None:  # type: ignore[no-untyped-def]
    """The cancel flag reaches the worker through its heartbeat (every second; the pipeline thread never
    reads the database); the job stops at the next denoising step after the heartbeat saw it."""
    db, data = qdb
    s = settings_for(data, db.url, VIDEOBOT_TEST_STEP_DELAY=0.1)
    q = JobQueue(db)
    job_id = await submit(q, steps=60)
    steps_run: list[int] = []
    seen_at: list[int] = []
    real_run = tiny_pipeline.run
    real_heartbeat = q.heartbeat

    def counting_run(params, on_step=None, **kwargs):  # type: ignore[no-untyped-def]
        def wrapped(k: int, n: int) -> None:
            steps_run.append(k)
            on_step(k, n)  # type: ignore[misc]

        return real_run(params, wrapped, **kwargs)

    async def watching_heartbeat(c, progress=None):  # type: ignore[no-untyped-def]
        beat = await real_heartbeat(c, progress)
        if beat.cancel_requested and not seen_at:
            seen_at.append(len(steps_run))
        return beat

    tiny_pipeline.run = counting_run
    q.heartbeat = watching_heartbeat  # type: ignore[method-assign]
    try:
        worker = Worker(s, q, tiny_pipeline, worker_id="w1", models=["tiny"])
        task = asyncio.create_task(worker.run())
        while len(steps_run) < 3:
            await asyncio.sleep(0.01)
        outcome = await q.cancel(job_id, user_id=1)
        assert outcome.state == "requested"
        await _wait_status(q, job_id, {"cancelled", "succeeded", "failed"}, 30)
        worker.stop()
        await asyncio.wait_for(task, 30)
    finally:
        tiny_pipeline.run = real_run
    assert (await q.get(job_id)).status == "cancelled"  # type: ignore[union-attr]
    assert seen_at, "no heartbeat saw the cancel"
    assert len(steps_run) <= seen_at[0] + 1 < 60
    assert await refunds(db, job_id) == 1
    assert await q.get_result(job_id) is None


async def test_cancel_during_encode_ends_cancelled_not_rerun(qdb, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    """A /cancel after the last denoising step: the worker's complete() ends the job cancelled and
    refunded once; it is never queued again."""
    db, data = qdb
    s = settings_for(data, db.url, VIDEOBOT_LEASE_SECONDS=2, VIDEOBOT_HEARTBEAT_SECONDS=0.5)
    q = JobQueue(db, QueueConfig(lease_seconds=2))
    job_id = await submit(q, steps=3)
    real_run = tiny_pipeline.run
    import threading

    rendered, cancelled = threading.Event(), threading.Event()

    def run_then_wait(params, on_step=None, **kwargs):  # type: ignore[no-untyped-def]
        frames = real_run(params, on_step, **kwargs)
        rendered.set()
        cancelled.wait(30)  # the cancel lands between the last step and the encode
        time.sleep(1.5)  # and a heartbeat sees it
        return frames

    tiny_pipeline.run = run_then_wait
    try:
        worker = Worker(s, q, tiny_pipeline, worker_id="w1", models=["tiny"])
        task = asyncio.create_task(worker.run())
        while not rendered.is_set():
            await asyncio.sleep(0.02)
        assert (await q.cancel(job_id, user_id=1)).state == "requested"
        cancelled.set()
        await _wait_status(q, job_id, {"cancelled", "succeeded", "failed", "queued"}, 30)
        await asyncio.sleep(3)  # longer than the lease: nothing brings it back
        worker.stop()
        await asyncio.wait_for(task, 30)
    finally:
        tiny_pipeline.run = real_run
    job = await q.get(job_id)
    assert job is not None and job.status == "cancelled" and job.attempts == 1
    assert await refunds(db, job_id) == 1
    assert await q.get_result(job_id) is None


async def test_a_database_bug_fails_the_job_at_once_and_other_errors_honour_retryable(
    qdb, tiny_pipeline
) -> None:  # type: ignore[no-untyped-def]
    """An IntegrityError while storing is a bug, not an outage: failed and refunded at once, not retried
    for two minutes. An unexpected error in the render is not retried either (only storage errors are)."""
    db, data = qdb
    s = settings_for(data, db.url)
    q = JobQueue(db, QueueConfig(max_attempts=3))
    job_id = await submit(q)
    async with db.transaction() as session:  # a stray result row: storing the real one hits the primary key
        session.add(
            JobResult(
                job_id=job_id,
                video=b"x",
                content_type="video/mp4",
                size_bytes=1,
                width=1,
                height=1,
                num_frames=1,
                fps=1.0,
                duration_s=1.0,
                created_at=time.time(),
            )
        )
    worker = Worker(s, q, tiny_pipeline, worker_id="w1", models=["tiny"])
    t0 = time.monotonic()
    assert await run_until(worker, q, job_id, {"failed", "succeeded"}, timeout=60) == "failed"
    assert time.monotonic() - t0 < 60
    job = await q.get(job_id)
    assert job is not None and job.attempts == 1 and job.error_code == "error"
    assert await refunds(db, job_id) == 1
    # An unexpected render error: failed once, refunded, not queued again.
    job_id = await submit(q, user=2)
    real_run = tiny_pipeline.run

    def broken(params, on_step=None):  # type: ignore[no-untyped-def]
        raise ValueError("a bug in the pipeline")

    tiny_pipeline.run = broken
    try:
        worker = Worker(s, q, tiny_pipeline, worker_id="w1", models=["tiny"])
        assert await run_until(worker, q, job_id, {"failed", "succeeded"}) == "failed"
    finally:
        tiny_pipeline.run = real_run
    job = await q.get(job_id)
    assert job is not None and job.attempts == 1 and job.error_code == "error"
    assert await refunds(db, job_id) == 1


async def test_out_of_memory_fails_politely_refunds_and_keeps_serving(qdb, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    s = settings_for(data, db.url)
    q = JobQueue(db)
    transformer = tiny_pipeline.pipe.transformer
    real_forward = transformer.forward
    calls = {"n": 0}

    def oom_once(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_forward(*args, **kwargs)

    transformer.forward = oom_once
    try:
        first = await submit(q, user=1)
        second = await submit(q, user=2)
        worker = Worker(s, q, tiny_pipeline, worker_id="w1", models=["tiny"])
        await run_until(worker, q, second, {"succeeded", "failed"})
    finally:
        transformer.forward = real_forward
    job = await q.get(first)
    assert job is not None and job.status == "failed" and job.error_code == "out_of_memory"
    assert "shorter" in (job.error_message or "") and "memory" in (job.error_message or "")
    assert await refunds(db, first) == 1
    assert (await q.get(second)).status == "succeeded"  # type: ignore[union-attr]


async def test_invalid_parameters_rejected_before_gpu_work_without_retry(qdb, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    q = JobQueue(db)
    job_id = await submit(q, num_frames=8)  # not 4k+1
    calls = {"n": 0}
    real_forward = tiny_pipeline.pipe.transformer.forward

    def counting(*a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real_forward(*a, **k)

    tiny_pipeline.pipe.transformer.forward = counting
    try:
        worker = Worker(settings_for(data, db.url), q, tiny_pipeline, worker_id="w1", models=["tiny"])
        assert await run_until(worker, q, job_id, {"failed", "succeeded"}) == "failed"
    finally:
        tiny_pipeline.pipe.transformer.forward = real_forward
    job = await q.get(job_id)
    assert job is not None and job.attempts == 1 and "frames" in (job.error_message or "")
    assert calls["n"] == 0
    assert await refunds(db, job_id) == 1


def _worker_env(data: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDEOBOT_", "DATABASE_URL", "DISCORD_"))}
    env.update(
        VIDEOBOT_DATA_DIR=str(data),
        DATABASE_URL=url,
        VIDEOBOT_MODEL="tiny",
        VIDEOBOT_POLL_SECONDS="0.1",
        VIDEOBOT_HEARTBEAT_SECONDS="0.5",
        VIDEOBOT_LEASE_SECONDS="3",
        VIDEOBOT_HEALTH_PORT="0",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


async def _start_worker(data: Path, url: str, log: Path, **extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "videobot.cli",
        "worker",
        cwd=ROOT,
        env=_worker_env(data, url, **extra),
        stdout=log.open("ab"),
        stderr=asyncio.subprocess.STDOUT,
    )


async def _wait_status(q: JobQueue, job_id: int, want: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await q.get(job_id)
        if job is not None and job.status in want:
            return job.status
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} not in {want} after {timeout} s")


async def _wait_running_step(q: JobQueue, job_id: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await q.get(job_id)
        if job is not None and job.status == "running" and job.progress_step >= 1:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("job never started")


async def test_sigterm_mid_job_hands_it_back_and_exits_cleanly(qdb, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    q = JobQueue(db)
    job_id = await submit(q, steps=30)
    log = tmp_path / "worker.log"
    proc = await _start_worker(
        data, db.url, log, VIDEOBOT_TEST_STEP_DELAY="0.3", VIDEOBOT_SHUTDOWN_GRACE_SECONDS="0.5"
    )
    await _wait_running_step(q, job_id)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()[-3000:]
    job = await q.get(job_id)
    assert job is not None and job.status == "queued" and job.attempts == 0, log.read_text()[-3000:]
    # The next worker finishes it: one charge, no refund, one result.
    proc = await _start_worker(data, db.url, log)
    try:
        assert await _wait_status(q, job_id, {"succeeded", "failed"}, 90) == "succeeded"
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    async with db.sessionmaker() as s:
        kinds = [
            r.kind
            for r in (await s.execute(select(LedgerEntry).where(LedgerEntry.job_id == job_id))).scalars()
        ]
    assert kinds == ["charge"]


async def test_kill_9_mid_job_is_finished_by_another_worker_after_the_lease(qdb, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    q = JobQueue(db)
    job_id = await submit(q, steps=30)
    log = tmp_path / "worker.log"
    victim = await _start_worker(data, db.url, log, VIDEOBOT_TEST_STEP_DELAY="0.3")
    await _wait_running_step(q, job_id)
    victim.kill()
    await victim.wait()
    first = await q.get(job_id)
    assert first is not None and first.status == "running" and first.attempts == 1
    rescuer = await _start_worker(data, db.url, log)
    try:
        assert await _wait_status(q, job_id, {"succeeded", "failed"}, 120) == "succeeded", log.read_text()[
            -3000:
        ]
    finally:
        rescuer.send_signal(signal.SIGTERM)
        await asyncio.wait_for(rescuer.wait(), 30)
    job = await q.get(job_id)
    assert job is not None and job.attempts == 2
    async with db.sessionmaker() as s:
        kinds = [
            r.kind
            for r in (await s.execute(select(LedgerEntry).where(LedgerEntry.job_id == job_id))).scalars()
        ]
    assert kinds == ["charge"]
    assert probe_mp4((await q.get_result(job_id)).video)["codec"] == "h264"  # type: ignore[union-attr]


async def test_database_unreachable_10_s_mid_run_the_render_is_stored_once_it_is_back(
    pg_url: str, tiny_data_dir: Path, tiny_model_dir: Path, tiny_pipeline, caplog
) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL behind a TCP proxy that is cut for 10 s while the job renders: the render goes on
    (no per-step database read), heartbeats fail and retry, and the finished video is stored once the
    database is back: one attempt, one render, one result, no refund."""
    from sqlalchemy.engine import make_url

    from tests.tcpproxy import CuttableProxy

    target = make_url(pg_url)
    proxy = CuttableProxy(target.host or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    direct = Database(pg_url)  # the test's own view, not through the proxy
    db = Database(url)
    steps = 12
    s = settings_for(tiny_data_dir, url, VIDEOBOT_TEST_STEP_DELAY=0.5, VIDEOBOT_LEASE_SECONDS=30)
    q = JobQueue(db, QueueConfig(lease_seconds=30))
    dq = JobQueue(direct)
    steps_run: list[int] = []
    real_run = tiny_pipeline.run

    def counting_run(params, on_step=None, **kwargs):  # type: ignore[no-untyped-def]
        def wrapped(k: int, n: int) -> None:
            steps_run.append(k)
            on_step(k, n)  # type: ignore[misc]

        return real_run(params, wrapped, **kwargs)

    tiny_pipeline.run = counting_run
    caplog.set_level("WARNING", logger="generator.worker")
    try:
        job_id = await submit(dq, steps=steps)
        worker = Worker(s, q, tiny_pipeline, worker_id="w-outage", models=["tiny"])
        task = asyncio.create_task(worker.run())
        try:
            while len(steps_run) < 2:
                await asyncio.sleep(0.02)
            await proxy.cut()
            cut_at = time.time()
            await asyncio.sleep(10)
            assert len(steps_run) == steps, "the render went on while the database was unreachable"
            assert (await dq.get(job_id)).status == "running"  # type: ignore[union-attr]
            await proxy.restore()
            back_at = time.time()
            assert await _wait_status(dq, job_id, {"succeeded", "failed", "queued"}, 60) == "succeeded"
        finally:
            worker.stop()
            await asyncio.wait_for(task, 60)
    finally:
        tiny_pipeline.run = real_run
        await db.dispose()
        await proxy.close()
    job = await dq.get(job_id)
    assert job is not None and job.attempts == 1 and job.finished_at is not None
    assert job.finished_at >= back_at - 1  # stored after the database came back
    assert len(steps_run) == steps  # rendered once
    # generation_seconds is the one render and its encode (steps x 0.5 s and a little), not two.
    assert job.generation_seconds is not None and steps * 0.5 <= job.generation_seconds < steps * 0.5 + 10
    assert job.finished_at - cut_at >= 10
    assert probe_mp4((await dq.get_result(job_id)).video)["codec"] == "h264"  # type: ignore[union-attr]
    async with direct.sessionmaker() as session:
        kinds = [
            r.kind
            for r in (
                await session.execute(select(LedgerEntry).where(LedgerEntry.job_id == job_id))
            ).scalars()
        ]
    await direct.dispose()
    assert kinds == ["charge"]
    assert any("heartbeat failed" in r.getMessage() for r in caplog.records)  # the outage was real


async def test_only_connection_level_errors_count_as_the_database_being_unreachable(
    tmp_path: Path, db_url: str
) -> None:
    """Real errors from real databases: "database is locked" and a refused connection are an outage
    (retried); a duplicate key, a missing table or bad data are bugs (not retried)."""
    import sqlite3

    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    from generator.worker import db_unreachable

    path = tmp_path / "locks.db"
    eng = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    with pytest.raises(DBAPIError) as locked, eng.begin() as c:
        c.exec_driver_sql("INSERT INTO t VALUES (1)")
    locker.rollback()
    assert "locked" in str(locked.value) and db_unreachable(locked.value)
    with eng.begin() as c:
        c.exec_driver_sql("INSERT INTO t VALUES (1)")
    with pytest.raises(DBAPIError) as duplicate, eng.begin() as c:
        c.exec_driver_sql("INSERT INTO t VALUES (1)")
    assert not db_unreachable(duplicate.value)
    with pytest.raises(DBAPIError) as missing, eng.begin() as c:
        c.exec_driver_sql("SELECT * FROM no_such_table")
    assert not db_unreachable(missing.value)
    eng.dispose()
    assert db_unreachable(ConnectionRefusedError(111, "Connection refused"))
    assert not db_unreachable(ValueError("a bug"))
    # The same questions on the test's database (SQLite file, and PostgreSQL when configured).
    db = Database(db_url)
    try:
        with pytest.raises(DBAPIError) as bad:
            async with db.transaction() as session:
                await session.execute(text("SELECT * FROM no_such_table"))
        assert not db_unreachable(bad.value)
        if db.dialect == "postgresql":
            with pytest.raises(DBAPIError) as bad_data:
                async with db.transaction() as session:
                    await session.execute(text("SELECT CAST('x' AS INTEGER)"))
            assert not db_unreachable(bad_data.value)
            refused = Database(db_url.replace(":5432/", ":1/"))
            with pytest.raises(Exception) as down:
                await refused.ping()
            await refused.dispose()
            assert db_unreachable(down.value), repr(down.value)
    finally:
        await db.dispose()


class SteppedSleep:
    """The worker's ``sleep``: returns when the test calls ``tick()``, having moved the clock by the delay."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._go = asyncio.Event()
        self._asleep = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self._asleep.set()
        await self._go.wait()
        self._go.clear()
        self.clock.advance(seconds)

    async def tick(self, n: int = 1) -> None:
        """Let the sleeper wake ``n`` times; returns once it is asleep again."""
        for _ in range(n):
            await asyncio.wait_for(self._asleep.wait(), 30)
            self._asleep.clear()
            self._go.set()
        await asyncio.wait_for(self._asleep.wait(), 30)


async def test_heartbeats_renew_the_lease_and_the_worker_row_on_time(
    clocked_db, clock, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """One clock drives the worker's timing and the database's: the lease and /healthz's row, step by step."""
    db = clocked_db
    q = JobQueue(db, QueueConfig(lease_seconds=30))
    job_id = await submit(q)
    claim = await q.claim("w1", ["tiny"])
    assert claim is not None and claim.job_id == job_id
    settings = settings_for(tmp_path, db.url, VIDEOBOT_HEARTBEAT_SECONDS=10, VIDEOBOT_LEASE_SECONDS=30)
    sleep = SteppedSleep(clock)
    worker = Worker(settings, q, None, worker_id="w1", models=["tiny"], monotonic=clock, sleep=sleep)
    await q.worker_seen("w1", ["tiny"])  # as run() does when it starts

    async def lease_and_seen() -> tuple[float, float]:
        job = await q.get(job_id)
        async with db.sessionmaker() as s:
            seen = (await s.execute(select(WorkerHeartbeat.seen_at))).scalar_one()
        assert job is not None
        return job.lease_expires_at, seen  # type: ignore[return-value]

    run = _Running(claim)
    beats = asyncio.create_task(worker._heartbeats(run))
    try:
        t0 = clock.now
        # No progress: the lease is renewed every second all the same (its answer carries the cancel
        # flag); the worker's row only every heartbeat interval.
        await sleep.tick(9)
        assert await lease_and_seen() == (at(t0 + 39), at(t0))
        await sleep.tick()
        assert await lease_and_seen() == (at(t0 + 40), at(t0 + 10))
        # Progress every second for 25 s: written (and the lease renewed) each second, and the
        # worker's row still refreshed every 10 s.
        for step in range(1, 26):
            run.progress = (step, 100)
            await sleep.tick()
            job = await q.get(job_id)
            assert job is not None and (job.progress_step, job.progress_total) == (step, 100)
            assert job.lease_expires_at == at(clock.now + 30)
        assert clock.now == at(t0 + 35)
        assert (await lease_and_seen())[1] == at(t0 + 30)
        assert not beats.done()
    finally:
        beats.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beats


async def test_a_busy_worker_claims_the_next_job_as_it_stores_one_and_hands_back_one_it_never_started(
    qdb, tiny_pipeline
) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    s = settings_for(data, db.url)
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    first, second, third = [await submit(q, user=u, steps=2) for u in (1, 2, 3)]
    worker = Worker(s, q, tiny_pipeline, worker_id="w1", models=["tiny"])
    stored = q.complete_and_claim

    async def then_sigterm(*args, **kwargs):  # type: ignore[no-untyped-def]
        status, following = await stored(*args, **kwargs)
        worker.stop()  # SIGTERM right after the commit that stored the first job and claimed the next
        return status, following

    q.complete_and_claim = then_sigterm  # type: ignore[method-assign]
    await asyncio.wait_for(worker.run(), 60)
    done, handed_back, untouched = [await q.get(i) for i in (first, second, third)]
    assert done is not None and done.status == "succeeded" and done.attempts == 1
    # The next job was claimed with the first one's result, and given back unstarted: queued again,
    # no lease, its attempt not counted.
    assert handed_back is not None and handed_back.status == "queued"
    assert handed_back.attempts == 0 and handed_back.lease_owner is None
    assert untouched is not None and untouched.status == "queued" and untouched.attempts == 0

    # A worker that goes on runs the rest, each claimed as the one before is stored.
    q.complete_and_claim = stored  # type: ignore[method-assign]
    claims = 0
    plain_claim = q.claim

    async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal claims
        found = await plain_claim(*args, **kwargs)
        claims += found is not None
        return found

    q.claim = counted  # type: ignore[method-assign]
    worker = Worker(s, q, tiny_pipeline, worker_id="w2", models=["tiny"])
    assert await run_until(worker, q, third, {"succeeded", "failed"}) == "succeeded"
    for job_id in (second, third):
        job = await q.get(job_id)
        assert job is not None and job.status == "succeeded" and job.attempts == 1, job_id
    assert claims == 1  # the second job by a claim; the third with the second's result
    assert await refunds(db, second) == 0


def test_the_loaded_model_is_left_out_of_garbage_collection(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    """What ``videobot worker`` does once its model is loaded: a full collection stops walking the
    model's objects (on the tiny model alone ~450k, ~180 ms per collection), and the model still works."""
    import gc

    from generator.worker import freeze_loaded_objects

    module = next(iter(tiny_pipeline.pipe.components.values()))
    assert gc.is_tracked(module) and any(o is module for o in gc.get_objects())
    try:
        assert freeze_loaded_objects() > 10_000
        assert not any(o is module for o in gc.get_objects())  # a full collection no longer visits it
        params = plan(PRESETS["tiny"], "after the freeze", seed=3)
        assert tiny_pipeline.run(params).frames.shape[0] == params.num_frames
    finally:
        gc.unfreeze()
