"""Intakes on real databases (SQLite, and PostgreSQL when configured): a pending picture's held credits
count against the member's balance and queue limit, atomically with the check; the job's charge
replaces the hold; closing releases it; ``IntakeBatcher`` writes and closes them together."""

from __future__ import annotations

import asyncio
import time

import pytest

from videobot.db import Database
from videobot.errors import QuotaExceeded, TooManyQueued
from videobot.jobs import IntakeBatcher, JobQueue, QueueConfig
from videobot.models import Intake

from .test_queue import GUILD, ledger_rows, req


def intake(interaction_id: int, user: int, reserved: int = 1, ttl: float = 900.0) -> Intake:
    return Intake(
        interaction_id=interaction_id,
        guild_id=GUILD,
        channel_id=2000,
        user_id=user,
        verb="video",
        locale="en-US",
        reserved=reserved,
        role_ids=[],
        application_id=1,
        interaction_token="secret-token",
        expires_at=time.time() + ttl,
    )


async def test_concurrent_holds_of_one_member_pass_the_check_only_while_credits_last(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=1, max_queued_per_user=3))
    outcomes = await asyncio.gather(
        *(q.open_intake(intake(100 + i, 7)) for i in range(8)), return_exceptions=True
    )
    assert sum(1 for o in outcomes if o is None) == 1
    assert all(isinstance(o, QuotaExceeded) for o in outcomes if o is not None)
    [held] = [100 + i for i, o in enumerate(outcomes) if o is None]
    # The hold counts for a plain submit too, and turns into the job's charge (not a second one).
    with pytest.raises(QuotaExceeded):
        await q.submit(req(7))
    submitted = await q.submit(req(7, intake_id=held))
    assert submitted.created and submitted.balance == 0
    assert [r.job_id for r in await ledger_rows(db, kind="charge")] == [submitted.job.id]
    await q.close_intake(held)
    assert await q.open_intakes() == []


async def test_a_hold_counts_toward_the_queue_limit_and_closing_releases_it(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=10, max_queued_per_user=2))
    await q.open_intake(intake(1, 8))
    await q.submit(req(8))
    with pytest.raises(TooManyQueued):
        await q.open_intake(intake(2, 8))
    await q.close_intake(1)  # refused or failed download: released
    await q.open_intake(intake(2, 8))
    # A hold whose token expired (a bot that died long ago) no longer counts.
    await q.close_intake(2)
    await q.open_intake(intake(3, 8, ttl=-1.0))
    await q.open_intake(intake(4, 8))


async def test_the_batcher_records_and_closes_intakes_that_hold_nothing(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=1))
    batcher = IntakeBatcher(q)
    await asyncio.gather(*(batcher.open(intake(200 + i, 9, reserved=0)) for i in range(5)))
    assert sorted(i.interaction_id for i in await q.open_intakes()) == [200, 201, 202, 203, 204]
    await q.submit(req(9))  # nothing held: the one credit is still there
    await asyncio.gather(*(batcher.close(200 + i) for i in range(5)))
    assert await q.open_intakes() == []
    await batcher.aclose()
