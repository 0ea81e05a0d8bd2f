"""Disk full while the worker writes the video: a retryable failure, the temporary file removed, charged once.

The worker runs in-process on the tiny model and a real SQLite file. The disk is "full" for the
encoder's file writes only (``av.open`` on the temporary file raises ENOSPC after writing part of it),
so the database keeps working, as it would with the database on another disk or server. The encoder
itself against a real write failure (RLIMIT_FSIZE) is tested in tests/generator/test_encode.py.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest

from generator.worker import GENERIC_FAILURE, Worker
from videobot.db import Database
from videobot.jobs import JobQueue, QueueConfig, SubmitRequest
from videobot.migrate import upgrade
from videobot.models import LedgerEntry
from videobot.presets import PRESETS, plan
from videobot.settings import Settings

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def setup(tmp_path: Path, tiny_model_dir: Path) -> AsyncIterator[tuple[JobQueue, Worker, Path]]:
    data = tmp_path / "data"
    shutil.copytree(tiny_model_dir, data / "models" / "tiny")
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        VIDEOBOT_DATA_DIR=str(data), DATABASE_URL=url, VIDEOBOT_MODEL="tiny", VIDEOBOT_POLL_SECONDS=0.05,
        VIDEOBOT_HEARTBEAT_SECONDS=0.5, VIDEOBOT_LEASE_SECONDS=5, VIDEOBOT_MAX_ATTEMPTS=2,
    )  # fmt: skip
    from generator.pipeline import VideoPipeline

    pipeline = await asyncio.to_thread(VideoPipeline.load, "tiny", data_dir=data, device="cpu")
    queue = JobQueue(db, QueueConfig(lease_seconds=5, max_attempts=2))
    yield queue, Worker(settings, queue, pipeline, worker_id="w-disk", models=["tiny"]), data / "tmp"
    await db.dispose()


class FullDisk:
    """``av.open`` for writing fails with ENOSPC after a partial write, ``fail`` times (None: always)."""

    def __init__(self, fail: int | None) -> None:
        self.fail = fail
        self.hits = 0
        self.real = av.open

    def __call__(self, name, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if mode == "w" and (self.fail is None or self.hits < self.fail):
            self.hits += 1
            Path(name).write_bytes(b"\0" * 4096)  # what a partial write leaves behind
            raise OSError(errno.ENOSPC, "No space left on device", str(name))
        return self.real(name, mode, *args, **kwargs)


async def submit(queue: JobQueue, key: str) -> int:
    params = plan(PRESETS["tiny"], "a fox running through snow", seed=3).to_dict()
    req = SubmitRequest(idempotency_key=key, guild_id=1, channel_id=2, user_id=3, model="tiny", params=params)
    return (await queue.submit(req)).job.id


async def run_until_final(worker: Worker, queue: JobQueue, job_id: int, timeout: float = 60) -> str:
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = await queue.get(job_id)
            assert job is not None
            if job.status in ("succeeded", "failed"):
                return job.status
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} stuck")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def ledger(queue: JobQueue, job_id: int) -> list[tuple[str, int]]:
    from sqlalchemy import select

    async with queue.db.sessionmaker() as s:
        rows = (await s.execute(select(LedgerEntry).where(LedgerEntry.job_id == job_id))).scalars()
        return sorted((e.kind, e.amount) for e in rows)


async def test_disk_full_once_is_retried_and_succeeds_charged_once(
    setup: tuple[JobQueue, Worker, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    queue, worker, tmp_dir = setup
    disk = FullDisk(fail=1)
    monkeypatch.setattr(av, "open", disk)
    job_id = await submit(queue, "disk-once")
    assert await run_until_final(worker, queue, job_id) == "succeeded"
    job = await queue.get(job_id)
    assert job is not None and disk.hits == 1 and job.attempts == 2
    assert "storage" in caplog.text and "retryable" in caplog.text
    assert (await queue.get_result(job_id)) is not None
    assert await ledger(queue, job_id) == [("charge", -1)]
    assert list(tmp_dir.iterdir()) == []


async def test_disk_full_every_time_fails_politely_refunded_once_no_temp_files(
    setup: tuple[JobQueue, Worker, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    queue, worker, tmp_dir = setup
    disk = FullDisk(fail=None)
    monkeypatch.setattr(av, "open", disk)
    job_id = await submit(queue, "disk-always")
    assert await run_until_final(worker, queue, job_id) == "failed"
    job = await queue.get(job_id)
    assert job is not None and disk.hits == 2 and job.attempts == 2
    assert job.error_code == "storage" and job.error_message == GENERIC_FAILURE
    assert "No space" not in job.error_message and "/" not in job.error_message
    assert await ledger(queue, job_id) == [("charge", -1), ("refund", 1)]
    assert list(tmp_dir.iterdir()) == []
