"""The job queue and quota ledger on real databases (SQLite file; PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from sqlalchemy import select, update

from tests.helpers import FakeClock, at
from videobot import quota
from videobot.db import Database
from videobot.errors import LeaseLost, QuotaExceeded, TooManyQueued
from videobot.jobs import JobQueue, QueueConfig, ResultData, SubmitRequest
from videobot.models import Job, LedgerEntry

GUILD = 1000
_keys = itertools.count()


def req(user: int, **kw) -> SubmitRequest:  # type: ignore[no-untyped-def]
    base = dict(
        idempotency_key=f"k{next(_keys)}",
        guild_id=GUILD,
        channel_id=2000,
        user_id=user,
        model="tiny",
        params={"prompt": "a fox", "num_inference_steps": 2},
    )
    base.update(kw)
    return SubmitRequest(**base)  # type: ignore[arg-type]


def result() -> ResultData:
    return ResultData(video=b"\x00mp4", width=32, height=32, num_frames=9, fps=8, duration_s=1.1)


async def balance(db: Database, user: int, cfg: QueueConfig, roles=()) -> quota.QuotaStatus:  # type: ignore[no-untyped-def]
    async with db.transaction() as s:
        return await quota.status(
            s, GUILD, user, role_ids=roles, default_limit=cfg.default_limit, window_seconds=cfg.window_seconds
        )


async def ledger_rows(db: Database, **where) -> list[LedgerEntry]:  # type: ignore[no-untyped-def]
    async with db.sessionmaker() as s:
        q = select(LedgerEntry)
        for k, v in where.items():
            q = q.where(getattr(LedgerEntry, k) == v)
        return list((await s.execute(q)).scalars())


async def test_concurrent_submits_never_overspend(db: Database) -> None:
    cfg = QueueConfig(default_limit=3, max_queued_per_user=100)
    q = JobQueue(db, cfg)
    seen_balances: list[int] = []

    async def one() -> bool:
        try:
            sub = await q.submit(req(7))
        except QuotaExceeded:
            return False
        seen_balances.append(sub.balance)
        return True

    outcomes = await asyncio.gather(*(one() for _ in range(50)))
    assert sum(outcomes) == 3
    assert min(seen_balances) >= 0
    st = await balance(db, 7, cfg)
    assert st.balance == 0
    async with db.sessionmaker() as s:
        assert st.limit + await quota.ledger_sum(s, GUILD, 7) == st.balance
        jobs = (await s.execute(select(Job).where(Job.user_id == 7))).scalars().all()
    assert len(jobs) == 3
    assert len(await ledger_rows(db, user_id=7, kind="charge")) == 3


async def test_same_idempotency_key_is_one_job_one_charge(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=5))
    a, b = await asyncio.gather(
        q.submit(req(8, idempotency_key="interaction-1")), q.submit(req(8, idempotency_key="interaction-1"))
    )
    c = await q.submit(req(8, idempotency_key="interaction-1"))
    assert a.job.id == b.job.id == c.job.id
    assert sorted([a.created, b.created, c.created]) == [False, False, True]
    assert len(await ledger_rows(db, user_id=8, kind="charge")) == 1
    assert (await balance(db, 8, q.config)).balance == 4


async def test_per_user_queue_cap(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=10, max_queued_per_user=2))
    await q.submit(req(9))
    await q.submit(req(9))
    with pytest.raises(TooManyQueued, match="/cancel"):
        await q.submit(req(9))
    assert len(await ledger_rows(db, user_id=9, kind="charge")) == 2
    await q.submit(req(10))  # another member is not affected


async def test_fencing_rejects_stale_owner_and_attempt(clocked_db: Database, clock: FakeClock) -> None:
    db = clocked_db
    q = JobQueue(db, QueueConfig(lease_seconds=30, max_attempts=3))
    job = (await q.submit(req(11))).job
    first = await q.claim("worker-a")
    assert first is not None and first.job_id == job.id and first.attempt == 1
    clock.advance(29)
    assert await q.recover_stale() == ([], [])  # the lease still runs
    clock.advance(2)
    assert await q.recover_stale() == ([job.id], [])
    second = await q.claim("worker-b")
    assert second is not None and second.attempt == 2
    with pytest.raises(LeaseLost):
        await q.complete(first, result())
    with pytest.raises(LeaseLost):
        await q.heartbeat(first, (1, 2))
    with pytest.raises(LeaseLost):
        await q.fail(first, "boom")
    # Same owner name but an old attempt is fenced too.
    from dataclasses import replace

    with pytest.raises(LeaseLost):
        await q.complete(replace(second, attempt=1), result())
    await q.complete(second, result())
    done = await q.get(job.id)
    assert done is not None and done.status == "succeeded"
    assert (await q.get_result(job.id)).video == b"\x00mp4"  # type: ignore[union-attr]


async def test_a_late_completion_of_an_earlier_attempt_by_the_same_worker_id_is_fenced(
    clocked_db: Database, clock: FakeClock
) -> None:
    """A worker with a fixed ``VIDEOBOT_WORKER_ID`` froze past its lease, was restarted and took the job
    again (same owner, attempt 2). The frozen attempt's completion, arriving first, is fenced out by the
    attempt alone: it neither stores its video nor claims the next job; the second attempt's video is the
    one kept, and the member is charged once."""
    q = JobQueue(clocked_db, QueueConfig(lease_seconds=30, max_attempts=3, max_queued_per_user=10))
    job = (await q.submit(req(61))).job
    other = (await q.submit(req(61))).job  # the member's next video, queued behind it
    stale = await q.claim("gpu-box", models=["tiny"])
    assert stale is not None and (stale.job_id, stale.attempt) == (job.id, 1)
    clock.advance(31)
    assert await q.recover_stale() == ([job.id], [])
    fresh = await q.claim("gpu-box", models=["tiny"])
    assert fresh is not None and (fresh.job_id, fresh.owner, fresh.attempt) == (job.id, "gpu-box", 2)
    old_video = ResultData(video=b"stale", width=32, height=32, num_frames=9, fps=8, duration_s=1.1)
    with pytest.raises(LeaseLost):
        await q.complete_and_claim(stale, old_video, models=["tiny"])
    row = await q.get(job.id)
    assert row is not None and (row.status, row.attempts, row.lease_owner) == ("running", 2, "gpu-box")
    assert await q.get_result(job.id) is None
    assert (await q.get(other.id)).status == "queued"  # type: ignore[union-attr]
    status, following = await q.complete_and_claim(fresh, result(), models=["tiny"])
    assert status == "succeeded" and following is not None and following.job_id == other.id
    assert (await q.get_result(job.id)).video == b"\x00mp4"  # type: ignore[union-attr]
    assert len(await ledger_rows(clocked_db, job_id=job.id, kind="charge")) == 1
    assert await ledger_rows(clocked_db, job_id=job.id, kind="refund") == []


async def test_heartbeat_extends_lease_and_reports_progress(clocked_db: Database, clock: FakeClock) -> None:
    db = clocked_db
    q = JobQueue(db, QueueConfig(lease_seconds=30))
    job = (await q.submit(req(12))).job
    c = await q.claim("w")
    assert c is not None and c.lease_expires_at == at(clock.now + 30)
    for step in range(1, 4):
        clock.advance(20)
        beat = await q.heartbeat(c, (step, 3))
        assert not beat.cancel_requested
        assert beat.lease_expires_at == at(clock.now + 30)  # renewed from now
        assert await q.recover_stale() == ([], [])
    # 60 s after the claim, twice the lease: never expired, because it was renewed.
    row = await q.get(job.id)
    assert row is not None and (row.progress_step, row.progress_total, row.status) == (3, 3, "running")
    # No heartbeat for longer than the lease: the job goes back to the queue.
    clock.advance(31)
    assert await q.recover_stale() == ([job.id], [])


async def test_max_attempts_then_failed_with_one_refund(clocked_db: Database, clock: FakeClock) -> None:
    db = clocked_db
    q = JobQueue(db, QueueConfig(lease_seconds=30, max_attempts=3, default_limit=2))
    job = (await q.submit(req(13))).job
    for attempt in range(1, 4):
        c = await q.claim(f"crashy-{attempt}")
        assert c is not None and c.attempt == attempt
        clock.advance(31)  # the worker "dies": no heartbeat for longer than the lease
        requeued, failed = await q.recover_stale()
        assert (requeued, failed) == (([job.id], []) if attempt < 3 else ([], [job.id]))
    row = await q.get(job.id)
    assert row is not None and row.status == "failed" and "refunded" in (row.error_message or "")
    assert len(await ledger_rows(db, job_id=job.id, kind="refund")) == 1
    assert (await balance(db, 13, q.config)).balance == 2
    assert await q.claim("anyone") is None


async def test_refund_exactly_once_under_races(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=5))
    # A queued job cancelled twice at once.
    job = (await q.submit(req(14))).job
    outcomes = await asyncio.gather(q.cancel(job.id, user_id=14), q.cancel(job.id, user_id=14))
    assert sorted(o.state for o in outcomes) == ["cancelled", "finished"]
    # A running job: fail twice, cancel and complete racing.
    job2 = (await q.submit(req(14))).job
    c = await q.claim("w")
    assert c is not None and c.job_id == job2.id
    results = await asyncio.gather(
        q.fail(c, "bad", code="x"),
        q.fail(c, "bad", code="x"),
        q.complete(c, result()),
        q.cancel(job2.id, user_id=14),
        return_exceptions=True,
    )
    final = await q.get(job2.id)
    assert final is not None and final.status in ("failed", "succeeded", "cancelled")
    refunds = await ledger_rows(db, job_id=job2.id, kind="refund")
    assert len(refunds) == (0 if final.status == "succeeded" else 1)
    assert sum(1 for r in results[:3] if not isinstance(r, BaseException)) == 1
    assert len(await ledger_rows(db, job_id=job.id, kind="refund")) == 1
    st = await balance(db, 14, q.config)
    assert st.balance == 5 - (1 if final.status == "succeeded" else 0)


async def test_cancel_running_sets_flag_and_worker_acknowledges(db: Database) -> None:
    q = JobQueue(db)
    job = (await q.submit(req(15))).job
    c = await q.claim("w")
    assert c is not None
    out = await q.cancel(job.id, user_id=15)
    assert out.state == "requested"
    assert (await q.heartbeat(c, (1, 2))).cancel_requested
    await q.acknowledge_cancel(c)
    row = await q.get(job.id)
    assert row is not None and row.status == "cancelled"
    assert len(await ledger_rows(db, job_id=job.id, kind="refund")) == 1
    with pytest.raises(LeaseLost):  # once ended, the worker's later writes are fenced out
        await q.complete(c, result())
    with pytest.raises(Exception, match="can't find"):
        await q.cancel(job.id, user_id=999)


async def _cancelled_once(db: Database, q: JobQueue, job_id: int, user: int) -> None:
    """The job ended cancelled, with its one charge refunded exactly once, no video, and the credit back."""
    row = await q.get(job_id)
    assert row is not None and row.status == "cancelled" and row.error_code == "cancelled"
    assert row.lease_owner is None and row.finished_at is not None
    assert "cancelled" in (row.error_message or "") and "refunded" in (row.error_message or "")
    assert [e.kind for e in await ledger_rows(db, job_id=job_id)] == ["charge", "refund"]
    assert await q.get_result(job_id) is None
    assert (await balance(db, user, q.config)).balance == q.config.default_limit


async def test_cancel_during_encode_complete_acknowledges_it(db: Database) -> None:
    """A /cancel after the last denoising step: complete() ends the job cancelled, never requeued."""
    q = JobQueue(db)
    job = (await q.submit(req(30))).job
    c = await q.claim("w")
    assert c is not None
    await q.heartbeat(c, (2, 2))  # the last step ran; the worker is encoding
    assert (await q.cancel(job.id, user_id=30)).state == "requested"
    assert await q.complete(c, result()) == "cancelled"  # the render is discarded
    await _cancelled_once(db, q, job.id, 30)
    assert await q.recover_stale() == ([], [])
    assert await q.claim("w2") is None
    with pytest.raises(LeaseLost):
        await q.acknowledge_cancel(c)  # a late acknowledgement refunds nothing more
    await _cancelled_once(db, q, job.id, 30)
    # Without a cancel, complete() still succeeds and says so.
    job2 = (await q.submit(req(30))).job
    c2 = await q.claim("w")
    assert c2 is not None and c2.job_id == job2.id
    assert await q.complete(c2, result()) == "succeeded"


async def test_cancel_during_lease_expiry_window_ends_cancelled(db: Database) -> None:
    """The worker died; the cancel came before recovery: recovery cancels and refunds, nothing is rerun."""
    q = JobQueue(db, QueueConfig(lease_seconds=0.2, max_attempts=3))
    job = (await q.submit(req(31))).job
    c = await q.claim("dies")
    assert c is not None
    assert (await q.cancel(job.id, user_id=31)).state == "requested"
    await asyncio.sleep(0.3)
    assert await q.claim("other") is None  # still running (lease expired, not recovered yet)
    assert await q.recover_stale() == ([], [job.id])
    await _cancelled_once(db, q, job.id, 31)
    assert await q.claim("other") is None
    assert await q.recover_stale() == ([], [])
    with pytest.raises(LeaseLost):  # the worker wakes up: fenced out, nothing refunded twice
        await q.fail(c, "late", retryable=True)
    await _cancelled_once(db, q, job.id, 31)


async def test_cancel_on_last_attempt_is_cancelled_not_crashed(db: Database) -> None:
    q = JobQueue(db, QueueConfig(lease_seconds=0.2, max_attempts=2))
    job = (await q.submit(req(32))).job
    c = await q.claim("crashy-1")
    assert c is not None
    await asyncio.sleep(0.3)
    assert await q.recover_stale() == ([job.id], [])
    c = await q.claim("crashy-2")
    assert c is not None and c.attempt == 2
    assert (await q.cancel(job.id, user_id=32)).state == "requested"
    await asyncio.sleep(0.3)
    assert await q.recover_stale() == ([], [job.id])
    await _cancelled_once(db, q, job.id, 32)


async def test_fail_and_release_of_a_cancelled_job_end_it_cancelled(db: Database) -> None:
    q = JobQueue(db, QueueConfig(max_attempts=3))
    for user, end in ((33, "retryable"), (34, "permanent"), (35, "release")):
        job = (await q.submit(req(user))).job
        c = await q.claim("w")
        assert c is not None and c.job_id == job.id
        assert (await q.cancel(job.id, user_id=user)).state == "requested"
        if end == "release":
            assert await q.release(c)  # graceful shutdown: not queued again
        else:
            assert await q.fail(c, "disk full", code="storage", retryable=end == "retryable") == "cancelled"
        await _cancelled_once(db, q, job.id, user)
        assert await q.claim("w") is None


async def test_a_flagged_queued_job_is_never_claimed_and_is_ended(db: Database) -> None:
    """A row left queued with the flag set (written before this rule): no worker takes it; recovery ends it."""
    q = JobQueue(db)
    job = (await q.submit(req(36))).job
    async with db.transaction() as s:
        await s.execute(update(Job).where(Job.id == job.id).values(cancel_requested=True))
    assert await q.claim("w") is None
    assert await q.recover_stale() == ([], [job.id])
    await _cancelled_once(db, q, job.id, 36)


async def test_cancel_racing_complete_and_fail_refunds_at_most_once(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=50, max_queued_per_user=50))
    outcomes = set()
    for _ in range(6):
        job = (await q.submit(req(37))).job
        c = await q.claim("w")
        assert c is not None and c.job_id == job.id
        await asyncio.gather(
            q.cancel(job.id, user_id=37),
            q.complete(c, result()),
            q.fail(c, "x", retryable=True),
            q.release(c),
            return_exceptions=True,
        )
        await q.recover_stale()
        row = await q.get(job.id)
        assert row is not None
        outcomes.add(row.status)
        kinds = sorted(e.kind for e in await ledger_rows(db, job_id=job.id))
        if row.status == "queued":  # fail(retryable) or release won before the cancel: still owed a run
            assert kinds == ["charge"] and not row.cancel_requested
            assert (await q.cancel(job.id, user_id=37)).state == "cancelled"
            row = await q.get(job.id)
            kinds = sorted(e.kind for e in await ledger_rows(db, job_id=job.id))
        assert row is not None and row.status in ("succeeded", "cancelled", "failed")
        assert kinds == (["charge"] if row.status == "succeeded" else ["charge", "refund"])
        assert (await q.get_result(job.id) is not None) == (row.status == "succeeded")


async def test_retryable_failure_requeues_then_fails(db: Database) -> None:
    q = JobQueue(db, QueueConfig(max_attempts=2))
    job = (await q.submit(req(16))).job
    c = await q.claim("w")
    assert c is not None
    assert await q.fail(c, "disk full", code="storage", retryable=True) == "queued"
    c = await q.claim("w")
    assert c is not None and c.attempt == 2
    assert await q.fail(c, "disk full", code="storage", retryable=True) == "failed"
    assert len(await ledger_rows(db, job_id=job.id, kind="refund")) == 1


async def test_fair_share_latecomer_runs_second(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=100, max_queued_per_user=100))
    a_jobs = [(await q.submit(req(21))).job.id for _ in range(20)]
    b_job = (await q.submit(req(22))).job.id
    order = []
    for _ in range(3):
        c = await q.claim("single-worker")
        assert c is not None
        order.append(c.job_id)
        await q.complete(c, result())
    assert order == [a_jobs[0], b_job, a_jobs[1]]


async def test_fair_share_with_two_workers_a_running_member_waits_behind_an_idle_one(
    clocked_db: Database, clock: FakeClock
) -> None:
    """Two GPUs: a member whose video is still rendering on one does not get the other ahead of a member
    with nothing running, even one served more recently and who queued later; the positions shown say so
    and the claims follow them (SQLite and PostgreSQL)."""
    q = JobQueue(clocked_db, QueueConfig(default_limit=100, max_queued_per_user=100))
    alice, bob = 51, 52
    a1 = (await q.submit(req(alice))).job.id
    long = await q.claim("gpu-1")  # alice's first video renders for a long time on GPU 1
    assert long is not None and long.job_id == a1
    clock.advance(10)
    b1 = (await q.submit(req(bob))).job.id
    c = await q.claim("gpu-2")
    assert c is not None and c.job_id == b1
    clock.advance(10)
    await q.complete(c, result())  # bob was served after alice, and GPU 2 is free again
    clock.advance(10)
    a2 = await q.submit(req(alice))  # first come
    b2 = await q.submit(req(bob))
    # Bob has nothing running: he is told he is next, although alice queued first and was served longer ago.
    assert b2.position == 1
    positions = await q.positions()
    assert (positions[b2.job.id], positions[a2.job.id]) == (1, 2)
    assert {job.id: pos for job, pos in await q.user_jobs(GUILD, alice)} == {a1: 0, a2.job.id: 2}
    shown = sorted(positions, key=positions.__getitem__)
    claimed = []
    while (c := await q.claim("gpu-2")) is not None:
        claimed.append(c.job_id)
        clock.advance(1)
        await q.complete(c, result())
    assert claimed == shown == [b2.job.id, a2.job.id]
    await q.complete(long, result())


async def test_claim_only_served_models(db: Database) -> None:
    q = JobQueue(db)
    wan = (await q.submit(req(23, model="wan2.1-1.3b"))).job.id
    tiny = (await q.submit(req(24, model="tiny"))).job.id
    c = await q.claim("w-tiny", models=["tiny"])
    assert c is not None and c.job_id == tiny
    assert await q.claim("w-tiny", models=["tiny"]) is None
    c = await q.claim("w-wan", models=["wan2.1-1.3b"])
    assert c is not None and c.job_id == wan


async def test_delivery_transitions(db: Database) -> None:
    q = JobQueue(db)
    job = (await q.submit(req(25))).job
    c = await q.claim("w")
    assert c is not None
    await q.complete(c, result())
    assert await q.mark_delivered(job.id, 555)
    assert not await q.mark_delivered(job.id, 556)  # never posted twice
    assert not await q.mark_undeliverable(job.id, "too late")  # a delivered job stays delivered
    assert await ledger_rows(db, job_id=job.id, kind="refund") == []
    # A video that could not be posted is refunded, once.
    lost = (await q.submit(req(25))).job
    c = await q.claim("w")
    assert c is not None and c.job_id == lost.id
    await q.complete(c, result())
    assert await q.mark_undeliverable(lost.id, "channel deleted")
    assert not await q.mark_undeliverable(lost.id, "channel deleted")
    assert len(await ledger_rows(db, job_id=lost.id, kind="refund")) == 1
    row = await q.get(job.id)
    assert row is not None and row.status == "delivered" and row.result_message_id == 555
    assert row.interaction_token is None
    # Retention: a delivered video is removed after the retention period.
    assert await q.purge_results(3600) == 0
    async with db.transaction() as s:
        await s.execute(update(Job).where(Job.id == job.id).values(delivered_at=Job.delivered_at - 7200))
    assert await q.purge_results(3600) == 1
    assert await q.get_result(job.id) is None


async def test_rolling_window_edges(clocked_db: Database, clock: FakeClock) -> None:
    db = clocked_db
    window = 3600.0
    cfg = QueueConfig(default_limit=2, window_seconds=window, max_queued_per_user=10)
    q = JobQueue(db, cfg)
    t0 = clock.now
    await q.submit(req(31))
    clock.advance(600)
    await q.submit(req(31))
    with pytest.raises(QuotaExceeded) as exc:
        await q.submit(req(31))
    st = await balance(db, 31, cfg)
    assert (st.balance, st.used, st.now) == (0, 2, at(t0 + 600))
    # The first charge leaves the window first: at t0 + window, and the refusal said so.
    assert st.next_credit_at == at(t0 + window)
    assert exc.value.retry_at == at(t0 + window)
    clock.advance(window - 600 - 1)  # one second before the first charge leaves the window
    st = await balance(db, 31, cfg)
    assert (st.balance, st.used) == (0, 2)
    with pytest.raises(QuotaExceeded):
        await q.submit(req(31))
    clock.advance(2)  # one second after: the first charge left, the second is still inside
    st = await balance(db, 31, cfg)
    assert (st.balance, st.used) == (1, 1)
    assert st.next_credit_at == at(t0 + 600 + window)
    await q.submit(req(31))
    with pytest.raises(QuotaExceeded):
        await q.submit(req(31))
    clock.advance(600)  # both earlier charges are out of the window; the third is in
    assert (await balance(db, 31, cfg)).balance == 1


async def test_limit_precedence_roles_override_grants_reset(db: Database) -> None:
    cfg = QueueConfig(default_limit=2)
    mod = 99
    async with db.transaction() as s:
        assert (await quota.effective_limit(s, GUILD, 41, [], 2)) == (2, "default")
        await quota.set_guild_default(s, GUILD, 3, actor_id=mod)
    async with db.transaction() as s:
        assert (await quota.effective_limit(s, GUILD, 41, [500, 501], 2)) == (3, "guild")
        await quota.set_role_limit(s, GUILD, 500, 4, actor_id=mod)
        await quota.set_role_limit(s, GUILD, 501, 10, actor_id=mod)
    async with db.transaction() as s:
        assert (await quota.effective_limit(s, GUILD, 41, [500, 501], 2)) == (10, "role")  # highest role wins
        assert (await quota.effective_limit(s, GUILD, 41, [500], 2)) == (4, "role")
        await quota.set_limit(s, GUILD, 41, 1, actor_id=mod, reason="spamming")
    async with db.transaction() as s:
        assert (await quota.effective_limit(s, GUILD, 41, [500, 501], 2)) == (1, "override")  # override wins
    q = JobQueue(db, cfg)
    await q.submit(req(41, role_ids=[501]))
    with pytest.raises(QuotaExceeded):
        await q.submit(req(41, role_ids=[501]))
    async with db.transaction() as s:
        await quota.grant(s, GUILD, 41, 2, actor_id=mod, reason="contest winner")
    st = await balance(db, 41, cfg, roles=[501])
    assert (st.limit, st.granted, st.used, st.balance) == (1, 2, 1, 2)
    await q.submit(req(41, role_ids=[501]))
    async with db.transaction() as s:
        await quota.reset(s, GUILD, 41, actor_id=mod, reason="fresh start")
    st = await balance(db, 41, cfg, roles=[501])
    assert (st.limit, st.source, st.used, st.granted, st.balance) == (10, "role", 0, 0, 10)
    async with db.sessionmaker() as s:
        from videobot.models import ModAction

        actions = (await s.execute(select(ModAction).order_by(ModAction.id))).scalars().all()
    assert [a.action for a in actions][-3:] == ["quota.set", "quota.grant", "quota.reset"]
    assert all(a.actor_id == mod for a in actions)
    assert actions[-3].reason == "spamming"


async def test_shown_positions_are_the_order_fair_share_claims_take(db: Database) -> None:
    """A member who queued three videos first does not hold the whole line: the positions shown say
    where the fair-share claim will really take each job, and a one-GPU worker takes them in that order."""
    q = JobQueue(db, QueueConfig(default_limit=10, max_queued_per_user=10))
    # User 1 served earlier today, so users 2 and 3 (never served) come before their second job.
    first = await q.submit(req(1))
    c = await q.claim("w")
    assert c is not None and c.job_id == first.job.id
    await q.complete(c, result())
    submitted = [await q.submit(req(user)) for user in (1, 1, 1, 2, 2, 3)]
    ids = [s.job.id for s in submitted]
    positions = await q.positions()
    shown = sorted(ids, key=lambda job_id: positions[job_id])
    # Not first come, first served: user 2 and 3 go before user 1's queued jobs; then turns.
    assert shown[:2] == [ids[3], ids[5]]
    assert shown != ids
    # Each member's own view (/queue) and the answer to a submit agree with the bulk positions.
    mine = await q.user_jobs(GUILD, 1)
    assert {job.id: pos for job, pos in mine} == {i: positions[i] for i in ids[:3]}
    claimed = []
    while (c := await q.claim("w")) is not None:
        claimed.append(c.job_id)
        await q.complete(c, result())
    assert claimed == shown
