"""Variations in the queue: one job, N result rows, N x the charge, partial and full refunds each once
(real SQLite file; PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.core.test_queue import GUILD, balance, ledger_rows, req
from tests.helpers import PG_ENV, PG_SKIP, pg_exec
from videobot.db import Database
from videobot.errors import LeaseLost
from videobot.jobs import JobQueue, QueueConfig, ResultData
from videobot.migrate import downgrade, upgrade


def video(variant: int, payload: bytes = b"mp4") -> ResultData:
    return ResultData(
        video=payload + bytes([variant]),
        width=32,
        height=32,
        num_frames=9,
        fps=8,
        duration_s=1.1,
        variant=variant,
    )


def variations_req(user: int, n: int, unit: int = 1):  # type: ignore[no-untyped-def]
    return req(user, cost=n * unit, params={"prompt": "a fox", "num_inference_steps": 2, "num_videos": n})


async def test_all_variations_stored_in_order_one_charge(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=5))
    job = (await q.submit(variations_req(21, 3))).job
    assert (await balance(db, 21, q.config)).balance == 2  # 3 credits for 3 videos
    claim = await q.claim("w")
    assert claim is not None
    assert await q.complete(claim, [video(2), video(0), video(1)]) == "succeeded"
    results = await q.get_results(job.id)
    assert [(r.variant, r.video) for r in results] == [(i, b"mp4" + bytes([i])) for i in range(3)]
    assert (await q.get_result(job.id)).variant == 0  # type: ignore[union-attr]
    row = await q.get(job.id)
    assert row is not None and row.error_message is None and row.error_code is None
    assert [e.kind for e in await ledger_rows(db, job_id=job.id)] == ["charge"]


async def test_partial_render_refunds_the_missing_share_once_and_says_so(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=10))
    job = (await q.submit(variations_req(22, 3, unit=2))).job  # 6 credits: 2 per video
    claim = await q.claim("w")
    assert claim is not None
    status = await q.complete(claim, [video(0), video(2)], missing_reason="Not enough GPU memory.")
    assert status == "succeeded"
    assert [r.variant for r in await q.get_results(job.id)] == [0, 2]
    row = await q.get(job.id)
    assert row is not None and row.error_code == "partial"
    assert row.error_message == (
        "2 of 3 variations were made; 1 could not be (Not enough GPU memory). "
        "2 credits for them were refunded."
    )
    rows = await ledger_rows(db, job_id=job.id)
    assert sorted((e.kind, e.amount) for e in rows) == [("charge", -6), ("partial_refund", 2)]
    assert (await balance(db, 22, q.config)).balance == 6  # 10 - 6 + 2
    # A second completion is fenced out: nothing stored or refunded twice.
    with pytest.raises(LeaseLost):
        await q.complete(claim, [video(1)])
    assert len(await ledger_rows(db, job_id=job.id)) == 2
    # The message then cannot be posted: the rest is refunded, never more than was charged.
    assert await q.mark_undeliverable(job.id, "The channel no longer exists.")
    rows = await ledger_rows(db, job_id=job.id)
    assert sorted((e.kind, e.amount) for e in rows) == [("charge", -6), ("partial_refund", 2), ("refund", 4)]
    assert (await balance(db, 22, q.config)).balance == 10
    assert not await q.mark_undeliverable(job.id, "again")  # refunded once
    assert len(await ledger_rows(db, job_id=job.id)) == 3


async def test_cancel_of_running_variations_refunds_all(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=5))
    job = (await q.submit(variations_req(23, 3))).job
    claim = await q.claim("w")
    assert claim is not None
    assert (await q.cancel(job.id, user_id=23)).state == "requested"
    # The worker finishes two of three just as the cancel lands: the cancel wins, all 3 come back.
    assert await q.complete(claim, [video(0), video(1)]) == "cancelled"
    assert await q.get_results(job.id) == []
    rows = await ledger_rows(db, job_id=job.id)
    assert sorted((e.kind, e.amount) for e in rows) == [("charge", -3), ("refund", 3)]
    assert (await balance(db, 23, q.config)).balance == 5


async def test_partial_refund_racing_cancel_and_undeliverable_never_exceeds_the_charge(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=8))
    for attempt in range(3):
        job = (await q.submit(variations_req(24 + attempt, 4))).job
        claim = await q.claim("w")
        assert claim is not None
        outcomes = await asyncio.gather(
            q.complete(claim, [video(0)], missing_reason="out of memory"),
            q.cancel(job.id, user_id=24 + attempt),
            return_exceptions=True,
        )
        row = await q.get(job.id)
        assert row is not None
        if row.status == "succeeded":
            await q.mark_undeliverable(job.id, "gone")
        refunded = sum(e.amount for e in await ledger_rows(db, job_id=job.id) if e.kind != "charge")
        assert refunded == 4, (outcomes, row.status)
        kinds = [e.kind for e in await ledger_rows(db, job_id=job.id)]
        assert len(kinds) == len(set(kinds))  # each kind once


async def test_complete_refuses_no_video_or_repeated_variants(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=5))
    job = (await q.submit(variations_req(28, 2))).job
    claim = await q.claim("w")
    assert claim is not None
    for bad in ([], [video(1), video(1)]):
        with pytest.raises(ValueError):
            await q.complete(claim, bad)
    row = await q.get(job.id)
    assert row is not None and row.status == "running"
    assert await q.complete(claim, video(0), missing_reason=None) == "succeeded"
    row = await q.get(job.id)
    assert (
        row is not None
        and row.error_message
        == "1 of 2 variations were made; 1 could not be. 1 credit for them was refunded."
    )


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of its own (the migration test moves it up and down)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
        return
    admin = os.environ.get(PG_ENV)
    if not admin:
        pytest.skip(PG_SKIP)
    name = f"videobot_mig_{uuid.uuid4().hex[:10]}"
    await pg_exec(admin, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        await pg_exec(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_migration_keeps_existing_results_as_variant_zero(fresh_url: str) -> None:
    url = fresh_url
    await asyncio.to_thread(upgrade, url, "0005")
    db = Database(url)
    try:
        async with db.transaction() as s:
            await s.execute(
                text(
                    "INSERT INTO jobs (id, idempotency_key, guild_id, channel_id, user_id, kind, model, params, "
                    "cost, status, attempts, max_attempts, cancel_requested, progress_step, progress_total, "
                    "upload_limit_bytes, created_at, queued_at, updated_at) VALUES (1, 'k', :g, 1, 1, 'command', "
                    "'tiny', '{}', 1, 'succeeded', 1, 3, false, 2, 2, 1000, 0, 0, 0)"
                ),
                {"g": GUILD},
            )
            await s.execute(
                text(
                    "INSERT INTO job_results (job_id, video, content_type, size_bytes, width, height, num_frames, "
                    "fps, duration_s, created_at) VALUES (1, :video, 'video/mp4', 1, 32, 32, 9, 8, 1.1, 0)"
                ),
                {"video": b"\x00"},
            )
        await db.dispose()
        await asyncio.to_thread(upgrade, url)
        q = JobQueue(db)
        assert [(r.job_id, r.variant, r.video) for r in await q.get_results(1)] == [(1, 0, b"\x00")]
        await asyncio.to_thread(downgrade, url, "0005")
        await asyncio.to_thread(upgrade, url)
        assert [r.variant for r in await q.get_results(1)] == [0]
    finally:
        await db.dispose()
