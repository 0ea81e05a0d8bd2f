"""Reads run beside a writer (deferred, read-only transactions); writes take the write lock up front."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from videobot.db import Database
from videobot.jobs import JobQueue, QueueConfig, SubmitRequest
from videobot.models import Job

HOLD_SECONDS = 2.0


async def test_reads_do_not_wait_for_a_writer_and_see_the_last_commit(db_url: str) -> None:
    writer_db, reader_db = Database(db_url), Database(db_url)  # two engines: two connection pools
    try:
        reader = JobQueue(reader_db, QueueConfig())
        job = (
            await reader.submit(
                SubmitRequest(
                    idempotency_key="r1", guild_id=1, channel_id=2, user_id=3, model="tiny", params={}
                )
            )
        ).job
        committed = await reader.get(job.id)
        assert committed is not None
        holding, reads_done = asyncio.Event(), asyncio.Event()
        state = {"writer_committed": False}

        async def writer() -> None:
            async with writer_db.transaction() as s:
                await s.execute(update(Job).where(Job.id == job.id).values(progress_step=5, updated_at=1e12))
                holding.set()  # the write lock is held from here until the commit
                # Hold it until the reads are done (or HOLD_SECONDS): a read that waited for this
                # commit would finish after it and see progress_step == 5.
                try:
                    await asyncio.wait_for(reads_done.wait(), HOLD_SECONDS)
                except TimeoutError:
                    pass
            state["writer_committed"] = True

        task = asyncio.create_task(writer())
        await holding.wait()
        try:
            got = await reader.get(job.id)
            queued = await reader.queue_length("tiny")
            feed = await reader.changes_since(committed.updated_at - 1)
            mine = await reader.user_jobs(1, 3)
            committed_before_reads = state["writer_committed"]
        finally:
            reads_done.set()
            await task
        assert not committed_before_reads, "a read waited for the writer to commit"
        assert got is not None and got.progress_step == 0  # the last committed state
        assert queued == 1
        assert feed == [(job.id, committed.updated_at)]
        assert [(j.id, pos) for j, pos in mine] == [(job.id, 1)]
        # Once the writer committed, a new read sees its change.
        after = await reader.get(job.id)
        assert after is not None and after.progress_step == 5
    finally:
        await writer_db.dispose()
        await reader_db.dispose()


async def test_a_write_in_a_read_session_is_refused(db: Database) -> None:
    q = JobQueue(db, QueueConfig())
    job = (
        await q.submit(
            SubmitRequest(idempotency_key="w1", guild_id=1, channel_id=2, user_id=3, model="tiny", params={})
        )
    ).job
    with pytest.raises(DBAPIError, match="(?i)read.?only"):
        async with db.sessionmaker() as s:
            await s.execute(update(Job).where(Job.id == job.id).values(progress_step=9))
            await s.commit()
    # The same pooled connection then writes in a write transaction, and reads see it.
    async with db.transaction() as s:
        await s.execute(update(Job).where(Job.id == job.id).values(progress_step=4))
    async with db.sessionmaker() as s:
        assert (await s.execute(select(Job.progress_step).where(Job.id == job.id))).scalar_one() == 4
