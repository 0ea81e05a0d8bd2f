"""Submits grouped into one transaction (``submit_many`` / ``SubmitBatcher``) on real databases:
each request charged once, refused on its own, and answered with the fair-share position."""

from __future__ import annotations

import asyncio

import pytest

from videobot.db import Database
from videobot.errors import QuotaExceeded, TooManyQueued
from videobot.jobs import JobQueue, QueueConfig, SubmitBatcher, Submitted

from .test_queue import ledger_rows, req


async def test_submit_many_refuses_each_request_on_its_own_and_charges_once(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=2, max_queued_per_user=3))
    first = req(1)
    batch = [first, req(1), req(1), req(2), first, req(3, cost=5)]
    results = await q.submit_many(batch)
    assert [type(r).__name__ for r in results] == [
        "Submitted", "Submitted", "QuotaExceeded", "Submitted", "Submitted", "QuotaExceeded",
    ]  # fmt: skip
    a, b, _, c, again, _ = results
    assert isinstance(a, Submitted) and isinstance(again, Submitted) and isinstance(c, Submitted)
    assert a.created and not again.created and again.job.id == a.job.id  # the same key: one job
    assert (a.balance, b.balance, c.balance) == (1, 0, 1)  # type: ignore[union-attr]
    # One charge per created job, nothing for the refusals.
    charges = await ledger_rows(db, kind="charge")
    assert sorted(r.job_id for r in charges) == sorted([a.job.id, b.job.id, c.job.id])  # type: ignore[union-attr]
    # Positions follow the fair-share claim order, not arrival: user 2's only job goes before user 1's second.
    positions = await q.positions()
    assert positions == {a.job.id: 1, c.job.id: 2, b.job.id: 3}  # type: ignore[union-attr]
    assert (a.position, c.position, b.position) == (1, 2, 3)  # type: ignore[union-attr]
    # A replay of the whole batch creates nothing and charges nothing.
    replay = await q.submit_many([first])
    assert isinstance(replay[0], Submitted) and not replay[0].created
    assert len(await ledger_rows(db, kind="charge")) == 3


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_batcher_groups_a_burst_and_answers_each_caller(db: Database, concurrency: int) -> None:
    q = JobQueue(db, QueueConfig(default_limit=100, max_queued_per_user=2))
    batcher = SubmitBatcher(q, max_batch=8, concurrency=concurrency)
    reqs = [req(user) for user in range(10) for _ in range(3)]  # the third of each member is refused
    results = await asyncio.gather(*(batcher.submit(r) for r in reqs), return_exceptions=True)
    await batcher.close()
    created = [r for r in results if isinstance(r, Submitted)]
    refused = [r for r in results if isinstance(r, TooManyQueued)]
    assert len(created) == 20 and len(refused) == 10
    for member in range(10):  # each member: two queued, one refused (which one: as the locks fell)
        theirs = results[member * 3 : member * 3 + 3]
        assert sum(isinstance(r, TooManyQueued) for r in theirs) == 1, theirs
    assert batcher.batches < 10, batcher.batches  # grouped, not one transaction each
    # Each answer shows the place at its batch's commit (later batches may move it, fair share).
    assert all(1 <= s.position <= 20 for s in created)
    assert sorted((await q.positions()).values()) == list(range(1, 21))
    assert len(await ledger_rows(db, kind="charge")) == 20


async def test_batcher_falls_back_to_single_submits_when_the_batch_fails(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=1))

    async def broken(_reqs: list) -> list:  # type: ignore[type-arg]
        raise ConnectionError("database went away")

    q.submit_many = broken  # type: ignore[method-assign]
    batcher = SubmitBatcher(q)
    ok, refused = await asyncio.gather(batcher.submit(req(5)), batcher.submit(req(5)), return_exceptions=True)
    await batcher.close()
    assert isinstance(ok, Submitted) and ok.created
    assert isinstance(refused, QuotaExceeded)
    assert batcher.batches == 1
