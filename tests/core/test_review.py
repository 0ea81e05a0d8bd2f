"""The safety policy's transitions on real databases: a flagged result is held (refunded once, or kept
charged as the server chose), an approved one goes back to be posted, a rejected one loses its files;
each decision once, each in the audit log."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select

from videobot import guilds
from videobot.db import Database
from videobot.jobs import JobQueue, QueueConfig, ResultData, SubmitRequest
from videobot.models import JobResult, LedgerEntry, ModAction
from videobot.safety import holds

GUILD = 1000
MOD = 77
_keys = itertools.count()


async def finished(q: JobQueue, *, score: float | None, nsfw: bool = False) -> int:
    """A job made and stored with this safety score; returns its id."""
    submitted = await q.submit(
        SubmitRequest(
            idempotency_key=f"r{next(_keys)}",
            guild_id=GUILD,
            channel_id=2000,
            user_id=5,
            model="tiny",
            params={"prompt": "a fox", "num_inference_steps": 2},
            channel_nsfw=nsfw,
        )
    )
    claim = await q.claim("w")
    assert claim is not None and claim.job_id == submitted.job.id
    video = ResultData(
        video=b"\x00mp4", width=32, height=32, num_frames=9, fps=8, duration_s=1.1, safety_score=score
    )
    await q.complete(claim, video)
    return submitted.job.id


async def ledger(db: Database, job_id: int) -> list[tuple[str, int]]:
    async with db.sessionmaker() as s:
        rows = (await s.execute(select(LedgerEntry).where(LedgerEntry.job_id == job_id))).scalars()
        return sorted((r.kind, r.amount) for r in rows)


async def actions(db: Database, job_id: int) -> list[tuple[str, int]]:
    async with db.sessionmaker() as s:
        rows = (await s.execute(select(ModAction).where(ModAction.target_id == job_id))).scalars()
        return [(r.action, r.actor_id) for r in rows]


@pytest.mark.parametrize(
    ("score", "level", "nsfw", "everywhere", "held"),
    [
        (0.5, "strict", False, False, True),
        (0.5, "standard", False, False, False),
        (0.9, "off", False, False, False),
        (0.9, "strict", True, False, False),  # age-restricted channel: posted
        (0.9, "strict", True, True, True),  # unless the server checks there too
        (None, "strict", False, False, False),  # not checked (the worker's check was off)
    ],
)
def test_the_policy(score: float | None, level: str, nsfw: bool, everywhere: bool, held: bool) -> None:
    assert holds(score, level, channel_nsfw=nsfw, everywhere=everywhere) is held


async def test_held_refunded_once_then_approved_once(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=10))
    job_id = await finished(q, score=1.0)
    assert await q.hold_if_flagged(job_id)
    assert not await q.hold_if_flagged(job_id)  # held already: nothing more, no second refund
    held = await q.held(job_id)
    assert held is not None and held.score == 1.0 and held.refunded and held.review_channel_id is None
    assert await ledger(db, job_id) == [("charge", -1), ("refund", 1)]
    assert not await q.approve(job_id, moderator_id=MOD, guild_id=GUILD + 1)  # another server's
    assert await q.approve(job_id, moderator_id=MOD, guild_id=GUILD)
    assert not await q.approve(job_id, moderator_id=MOD, guild_id=GUILD)
    assert not await q.reject(job_id, actor_id=MOD, guild_id=GUILD)
    job = await q.get(job_id)
    assert job is not None and job.status == "succeeded" and job.safety_approved_by == MOD
    assert not await q.hold_if_flagged(job_id)  # approved: posted without another check
    assert await ledger(db, job_id) == [("charge", -1), ("refund", 1)]
    assert await actions(db, job_id) == [("safety.held", 0), ("safety.approve", MOD)]


async def test_a_server_that_keeps_the_charge_then_a_rejection_refunds_and_deletes(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=10))
    async with db.transaction() as s:
        await guilds.set_safety(s, GUILD, "standard", everywhere=False, charge_held=True, actor_id=MOD)
    assert not await q.hold_if_flagged(await finished(q, score=0.5))  # under standard's threshold
    job_id = await finished(q, score=0.8)
    assert await q.hold_if_flagged(job_id)
    assert await ledger(db, job_id) == [("charge", -1)]
    assert await q.mark_held_told(job_id) and not await q.mark_held_told(job_id)
    assert await q.reject(job_id, actor_id=MOD, guild_id=GUILD)
    assert not await q.reject(job_id, actor_id=MOD, guild_id=GUILD)
    job = await q.get(job_id)
    assert job is not None and (job.status, job.error_code, job.notified_at) == ("failed", "rejected", None)
    assert await ledger(db, job_id) == [("charge", -1), ("refund", 1)]
    async with db.sessionmaker() as s:
        assert (await s.execute(select(JobResult).where(JobResult.job_id == job_id))).first() is None
    assert job_id in {j.id for j in await q.owed()}  # the requester is owed a notice
    assert await actions(db, job_id) == [("safety.held", 0), ("safety.reject", MOD)]
