"""A fleet of real `videobot worker` processes on the real PostgreSQL server (tiny model).

4 workers x 200 jobs; one worker killed mid-job; PostgreSQL restarted mid-run. Each job must end
succeeded, be run to completion exactly once (one "done" log line), and be charged once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.pgcluster import PrivatePostgres
from videobot.db import Database
from videobot.jobs import JobQueue, QueueConfig, SubmitRequest
from videobot.migrate import upgrade
from videobot.models import Job, LedgerEntry
from videobot.presets import PRESETS, plan

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from generator.tiny import build_tiny_model

    data = tmp_path_factory.mktemp("fleet-data")
    build_tiny_model(data / "models" / "tiny")
    return data


def start_worker(n: int, url: str, data: Path, logdir: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDEOBOT_", "DATABASE_URL", "DISCORD_"))}
    env.update(
        DATABASE_URL=url,
        VIDEOBOT_DATA_DIR=str(data),
        VIDEOBOT_MODEL="tiny",
        VIDEOBOT_WORKER_ID=f"fleet-{n}",
        VIDEOBOT_POLL_SECONDS="0.1",
        VIDEOBOT_HEARTBEAT_SECONDS="0.5",
        VIDEOBOT_LEASE_SECONDS="4",
        VIDEOBOT_HEALTH_PORT="0",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "videobot.cli", "worker"],
        cwd=ROOT,
        env=env,
        stdout=(logdir / f"worker-{n}.log").open("ab"),
        stderr=subprocess.STDOUT,
    )


def done_lines(logdir: Path) -> list[int]:
    ids = []
    for log in logdir.glob("worker-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("logger") == "generator.worker" and " done in " in rec.get("msg", ""):
                ids.append(int(rec["job_id"]))
    return ids


async def submit_many(db: Database, n: int, *, steps: int | None = None) -> list[int]:
    q = JobQueue(db, QueueConfig(default_limit=10_000, max_queued_per_user=10_000))
    ids = []
    for i in range(n):
        p = plan(PRESETS["tiny"], f"clip {i}", seed=i).to_dict()
        if steps:
            p["num_inference_steps"] = steps
        sub = await q.submit(
            SubmitRequest(
                idempotency_key=f"fleet-{i}", guild_id=1, channel_id=1, user_id=i % 20, model="tiny", params=p
            )
        )
        ids.append(sub.job.id)
    return ids


async def wait_all_finished(db: Database, n: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with db.sessionmaker() as s:
                counts = dict((await s.execute(select(Job.status, func.count()).group_by(Job.status))).all())
        except Exception:  # the server may be restarting
            counts = {}
        if counts.get("succeeded", 0) + counts.get("failed", 0) >= n or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.5)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


async def assert_each_once(db: Database, ids: list[int], logdir: Path) -> None:
    async with db.sessionmaker() as s:
        jobs = (await s.execute(select(Job))).scalars().all()
        charges = (
            await s.execute(
                select(LedgerEntry.job_id, func.count())
                .where(LedgerEntry.kind == "charge")
                .group_by(LedgerEntry.job_id)
            )
        ).all()
        refunds = (
            await s.execute(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "refund"))
        ).scalar_one()
    assert {j.status for j in jobs} == {"succeeded"}, sorted(
        (j.id, j.status, j.error_message) for j in jobs if j.status != "succeeded"
    )[:5]
    assert len(jobs) == len(ids)
    assert all(n == 1 for _, n in charges) and len(charges) == len(ids)
    assert refunds == 0
    done = done_lines(logdir)
    assert sorted(done) == sorted(ids), (
        f"runs completed more than once: {sorted({i for i in done if done.count(i) > 1})}"
    )


async def test_four_workers_two_hundred_jobs_each_run_once(
    pg_url: str, tiny_data: Path, tmp_path: Path
) -> None:
    db = Database(pg_url)
    try:
        ids = await submit_many(db, 200)
        procs = [start_worker(n, pg_url, tiny_data, tmp_path) for n in range(4)]
        try:
            counts = await wait_all_finished(db, 200, 400)
        finally:
            stop_all(procs)
        assert counts == {"succeeded": 200}, counts
        await assert_each_once(db, ids, tmp_path)
        async with db.sessionmaker() as s:
            per_worker = (
                await s.execute(select(Job.lease_owner).where(Job.id < 0))
            ).all()  # leases are cleared
        assert per_worker == []
        workers_that_worked = {
            log.name for log in tmp_path.glob("worker-*.log") if " done in " in log.read_text()
        }
        assert len(workers_that_worked) >= 2
    finally:
        await db.dispose()


@pytest.fixture
def private_pg_url() -> Iterator[tuple[PrivatePostgres, str]]:
    """A migrated database on a PostgreSQL server of the test's own (restarting it disturbs no other test)."""
    ok, why = PrivatePostgres.available()
    if not ok:
        pytest.skip(why)
    with PrivatePostgres() as pg:
        upgrade(pg.url)
        yield pg, pg.url


async def test_killed_worker_and_postgres_restart_lose_nothing(
    private_pg_url: tuple[PrivatePostgres, str], tiny_data: Path, tmp_path: Path
) -> None:
    pg, pg_url = private_pg_url
    db = Database(pg_url)
    try:
        ids = await submit_many(db, 40, steps=6)
        procs = [
            start_worker(n, pg_url, tiny_data, tmp_path, VIDEOBOT_TEST_STEP_DELAY="0.25") for n in range(3)
        ]
        try:
            # Kill one worker while it is in the middle of a job.
            deadline = time.monotonic() + 120
            victim_job = None
            while victim_job is None and time.monotonic() < deadline:
                async with db.sessionmaker() as s:
                    victim_job = (
                        await s.execute(
                            select(Job.id).where(Job.status == "running", Job.lease_owner == "fleet-0")
                        )
                    ).scalar_one_or_none()
                await asyncio.sleep(0.05)
            assert victim_job is not None, "worker 0 never ran a job"
            procs[0].kill()
            # Then restart the database server under everyone's feet.
            await asyncio.sleep(1.0)
            await asyncio.to_thread(pg.restart)
            counts = await wait_all_finished(db, 40, 300)
        finally:
            stop_all(procs)
        assert counts == {"succeeded": 40}, counts
        await assert_each_once(db, ids, tmp_path)
        victim = await JobQueue(db).get(victim_job)
        assert victim is not None and victim.attempts >= 2
    finally:
        await db.dispose()
