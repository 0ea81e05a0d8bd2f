"""One bot per database, and the housekeeping the bot does when no worker is alive (real databases)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import psutil
import pytest
from sqlalchemy import select, update

from videobot.botlock import AnotherBotRunning, BotLock
from videobot.db import Database
from videobot.jobs import JobQueue, QueueConfig
from videobot.maintenance import Maintenance, MaintenanceConfig
from videobot.models import BotLock as BotLockRow
from videobot.models import Job, JobResult, LedgerEntry, WorkerHeartbeat

from .test_queue import req, result


async def test_a_second_bot_is_refused_until_the_first_lets_go(db_url: str) -> None:
    first, second = Database(db_url), Database(db_url)
    try:
        a, b = BotLock(first), BotLock(second)
        await a.acquire()
        with pytest.raises(AnotherBotRunning, match="exactly one `videobot bot`"):
            await b.acquire()
        await a.renew()  # the holder keeps it
        with pytest.raises(AnotherBotRunning):
            await b.acquire()
        await a.release()
        await b.acquire()
        with pytest.raises(AnotherBotRunning):
            await BotLock(first).acquire()
        await b.release()
    finally:
        await first.dispose()
        await second.dispose()


async def test_sqlite_lock_of_a_dead_process_or_an_expired_lease_is_taken_over(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from videobot.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'v.db'}"
    upgrade(url)
    db = Database(url)
    try:
        # A bot killed with SIGKILL never released its lock: a new bot on this machine takes it at once.
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        await BotLock(db, owner=f"{socket.gethostname()}:{dead.pid}:aaaaaa").acquire()
        await BotLock(db).acquire()
        # A holder on another machine (or alive) is respected until its lease passes.
        async with db.transaction() as s:
            await s.execute(update(BotLockRow).values(owner="elsewhere:1:bbbbbb"))
        late = BotLock(db)
        with pytest.raises(AnotherBotRunning, match="elsewhere, pid 1"):
            await late.acquire()
        async with db.transaction() as s:
            await s.execute(update(BotLockRow).values(expires_at=BotLockRow.expires_at - 3600))
        await late.acquire()
        async with db.sessionmaker() as s:
            assert (await s.execute(select(BotLockRow.owner))).scalar_one() == late.owner
    finally:
        await db.dispose()


async def test_sqlite_lock_of_an_earlier_process_with_the_same_pid_is_taken_over(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from videobot.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'v.db'}"
    upgrade(url)
    db = Database(url)
    host, pid = socket.gethostname(), os.getpid()
    started = psutil.Process(pid).create_time()
    try:
        # A container restarted after a hard kill runs its new bot with the old one's pid (1 in both):
        # the row names this very pid, but a process that started an hour earlier. Taken over at once,
        # well inside its lease.
        await BotLock(db, owner=f"{host}:{pid}:{started - 3600:.2f}:aaaaaa").acquire()
        new = BotLock(db)
        await new.acquire()
        async with db.sessionmaker() as s:
            assert (await s.execute(select(BotLockRow.owner))).scalar_one() == new.owner
        # The same pid that started at the same time is a live bot: respected.
        with pytest.raises(AnotherBotRunning, match=f"{host}, pid {pid}, seen"):
            await BotLock(db).acquire()
    finally:
        await db.dispose()


async def test_jobs_that_wait_too_long_are_cancelled_refunded_once(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=5))
    old = (await q.submit(req(31))).job
    fresh = (await q.submit(req(32))).job
    async with db.transaction() as s:
        await s.execute(update(Job).where(Job.id == old.id).values(queued_at=Job.queued_at - 7200))
    lock = BotLock(db)
    await lock.acquire()
    woken = []
    m = Maintenance(
        q,
        lock,
        MaintenanceConfig(retention_seconds=86400, queue_expiry_seconds=3600, lease_seconds=60),
        on_change=lambda: woken.append(1),
    )
    await m.tick()
    await m.tick()  # nothing more is due: the refund is not paid twice
    job = await q.get(old.id)
    assert job is not None and job.status == "cancelled" and job.error_code == "expired"
    assert "waited more than 60 minutes" in (job.error_message or "")
    assert (await q.get(fresh.id)).status == "queued"  # type: ignore[union-attr]
    async with db.sessionmaker() as s:
        kinds = (
            (await s.execute(select(LedgerEntry.kind).where(LedgerEntry.job_id == old.id))).scalars().all()
        )
    assert sorted(kinds) == ["charge", "refund"]
    assert woken == [1]
    await lock.release()


async def test_a_video_never_posted_within_retention_is_refunded_and_removed(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=5))
    job = (await q.submit(req(33))).job
    c = await q.claim("w")
    assert c is not None
    await q.complete(c, result())
    async with db.transaction() as s:
        await s.execute(update(Job).where(Job.id == job.id).values(finished_at=Job.finished_at - 7200))
    assert await q.expire_undelivered(3600) == [job.id]
    assert await q.expire_undelivered(3600) == []
    done = await q.get(job.id)
    assert done is not None and done.status == "undeliverable"
    async with db.sessionmaker() as s:
        assert await s.get(JobResult, (job.id, 0)) is None
        kinds = (
            (await s.execute(select(LedgerEntry.kind).where(LedgerEntry.job_id == job.id))).scalars().all()
        )
    assert sorted(kinds) == ["charge", "refund"]


async def test_a_worker_killed_without_goodbye_leaves_the_worker_list_after_a_day(db: Database) -> None:
    q = JobQueue(db, QueueConfig())
    await q.worker_seen("killed", ["tiny"])
    await q.worker_seen("alive", ["tiny"])
    async with db.transaction() as s:
        await s.execute(
            update(WorkerHeartbeat)
            .where(WorkerHeartbeat.worker_id == "killed")
            .values(seen_at=WorkerHeartbeat.seen_at - 2 * 86400)
        )
    lock = BotLock(db)
    await lock.acquire()
    m = Maintenance(
        q, lock, MaintenanceConfig(retention_seconds=86400, queue_expiry_seconds=3600, lease_seconds=60)
    )
    await m.tick()
    async with db.sessionmaker() as s:
        left = (await s.execute(select(WorkerHeartbeat.worker_id))).scalars().all()
    assert left == ["alive"]
    await lock.release()
