"""Chaos run: /video jobs through the real bot and real workers while processes are killed and frozen.

    python bench/chaos.py --jobs 300 --worker-kills 15 --bot-kills 3 --stops 6 --seed 1 --deadline 900

Starts the fake Discord, the real ``videobot bot`` and ``--workers`` real ``videobot worker`` processes
(tiny model, a short lease) and submits ``--jobs`` ``/video`` commands from many members, keeping about
``--in-flight`` jobs queued or running (a steady load, so that recovery time measures recovery and not a
backlog). Meanwhile, spread over the run: ``kill -9`` of a worker that holds a job (restarted at once),
``kill -9`` of the bot (restarted), ``SIGSTOP`` of a worker that holds a job for longer than its lease
(then ``SIGCONT``), and some ``/cancel``. When everything has settled (or at ``--deadline``) it prints
one line per figure; ``lost``, ``delivered twice``, ``duplicate completions`` and ``ledger mismatches``
must be 0.

Definitions
- accepted: a job row created by a /video (charged). lost: an accepted job that did not end in a
  final state that the requester was told about (delivered with its post in the channel, failed or
  cancelled with ``notified_at``), or a delivered job whose post is missing.
- acknowledged but unanswered: a "thinking…" that never became an answer. Must be 0: a request is
  recorded (``intakes``) before it is acknowledged, and a bot killed between ``defer()`` and queueing
  is answered by the next one ("the bot restarted before your request could be queued", counted as
  refused: nothing charged, no job) or told its job when it was queued.
- delivered twice: more than one message in the channel carrying the job's result file. A result that
  went into the requester's ephemeral message instead of the channel counts as lost.
- duplicate completions: more than one ``job N done in`` worker log line for a job (a completed GPU run
  stored twice). fenced duplicate runs: a worker that lost its lease (frozen past it) and was fenced out.
- ledger mismatches: members whose ``videobot.quota.status`` balance differs from limit + Σ ledger rows,
  plus jobs not charged exactly once or refunded other than exactly once when failed/cancelled.
- recovery: from a kill -9 / SIGSTOP of a worker holding job J to J's next ``started_at`` (any worker).

Importable: ``await run_chaos(ChaosConfig(...), workdir)`` returns a ``ChaosReport``
(``tests/faults/test_chaos_small.py`` runs a small one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import PG_ENV, WORKER_READY, BotHarness, _Proc  # noqa: E402
from videobot import quota  # noqa: E402
from videobot.models import Job, LedgerEntry  # noqa: E402

FINAL = ("delivered", "failed", "cancelled", "undeliverable")


@dataclass
class ChaosConfig:
    jobs: int = 300
    worker_kills: int = 15
    bot_kills: int = 3
    stops: int = 6
    seed: int = 1
    deadline: float = 900.0
    postgres: str | None = None
    workers: int = 2
    users: int = 40
    in_flight: int = 6
    #: Fraction of submissions followed by a /cancel of a random active job.
    cancel_rate: float = 0.04
    lease_seconds: float = 5.0
    heartbeat_seconds: float = 1.0
    #: Seconds per denoising step (2 steps): long enough that kills land inside jobs.
    step_delay: float = 0.4
    #: How long a SIGSTOPped worker stays frozen beyond its lease.
    stop_extra: float = 3.0


@dataclass
class ChaosReport:
    submitted: int = 0
    acknowledged: int = 0
    accepted: int = 0
    refused: int = 0
    unanswered: int = 0
    delivered: int = 0
    failed_refunded: int = 0
    cancelled_refunded: int = 0
    undeliverable: int = 0
    lost: int = 0
    lost_ids: list[int] = field(default_factory=list)
    delivered_twice: int = 0
    delivered_privately: int = 0
    duplicate_completions: int = 0
    fenced_runs: int = 0
    retried_jobs: int = 0
    ledger_mismatches: int = 0
    ledger_problems: list[str] = field(default_factory=list)
    worker_kills: int = 0
    bot_kills: int = 0
    stops: int = 0
    cancels: int = 0
    recoveries: list[float] = field(default_factory=list)
    kills_holding_a_job: int = 0
    not_rerun: int = 0  # a killed job that ended without running again (cancelled meanwhile)
    bot_restart_seconds: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    settled: bool = False

    def lines(self) -> list[str]:
        rec = sorted(self.recoveries)
        restarts = sorted(self.bot_restart_seconds)
        return [
            f"jobs submitted (/video): {self.submitted} (acknowledged {self.acknowledged}, accepted {self.accepted}, "
            f"refused {self.refused}, acknowledged but unanswered because the bot was killed: {self.unanswered})",
            f"delivered: {self.delivered}",
            f"failed and refunded: {self.failed_refunded}",
            f"cancelled and refunded: {self.cancelled_refunded}",
            f"undeliverable: {self.undeliverable}",
            f"lost: {self.lost}" + (f" {self.lost_ids[:20]}" if self.lost_ids else ""),
            f"delivered twice: {self.delivered_twice}",
            f"delivered only in an ephemeral message (counted as lost): {self.delivered_privately}",
            f"duplicate completions (GPU runs stored twice): {self.duplicate_completions}",
            f"fenced duplicate runs (frozen worker past its lease, fenced out): {self.fenced_runs}",
            f"jobs that needed more than one attempt: {self.retried_jobs}",
            f"ledger mismatches: {self.ledger_mismatches}"
            + (f" {self.ledger_problems[:10]}" if self.ledger_problems else ""),
            f"chaos: {self.worker_kills} worker kill -9, {self.bot_kills} bot kill -9, {self.stops} SIGSTOP past "
            f"the lease, {self.cancels} /cancel",
            f"recovery (kill/stop of a worker holding a job -> that job running again): {len(rec)} of "
            f"{self.kills_holding_a_job}, p50 {pct(rec, 50):.1f} s, p99 {pct(rec, 99):.1f} s, max "
            f"{max(rec, default=0):.1f} s (ended without a rerun: {self.not_rerun})",
            f"bot restart (kill -9 -> ready): p50 {pct(restarts, 50):.1f} s, max {max(restarts, default=0):.1f} s",
            f"wall time: {self.wall_seconds:.0f} s, settled: {self.settled}",
        ]


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


class Chaos:
    def __init__(self, cfg: ChaosConfig, workdir: Path) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.workdir = workdir
        env = {
            "VIDEOBOT_LEASE_SECONDS": str(cfg.lease_seconds),
            "VIDEOBOT_HEARTBEAT_SECONDS": str(cfg.heartbeat_seconds),
            "VIDEOBOT_LOG_LEVEL": "INFO",
            "VIDEOBOT_POLL_SECONDS": "0.2",
            "VIDEOBOT_DEFAULT_QUOTA": str(cfg.jobs + 10),
            "VIDEOBOT_MAX_QUEUED_PER_USER": str(cfg.jobs + 10),
        }
        self.h = BotHarness(workdir, worker=False, db="postgresql" if cfg.postgres else "sqlite",
                            common_env=env, extra_members=cfg.users)  # fmt: skip
        self.workers = [_Proc(f"worker{i}", workdir / f"worker{i}.log") for i in range(cfg.workers)]
        self.worker_ids: list[str | None] = [None] * cfg.workers
        self.worker_ready = [asyncio.Event() for _ in range(cfg.workers)]
        self.bot_up = asyncio.Event()
        self.report = ChaosReport()
        self.interactions: list = []
        self.pending_recovery: dict[int, float] = {}  # job id -> time of the kill (time.time())
        self.tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ processes
    async def start_worker(self, i: int) -> None:
        proc = self.workers[i]
        wid = f"chaos-w{i}-{proc.starts + 1}"
        env = self.h._env({"VIDEOBOT_WORKER_ID": wid, "VIDEOBOT_TEST_STEP_DELAY": str(self.cfg.step_delay)})
        await proc.start([sys.executable, "-m", "videobot.cli", "worker"], env, self.workdir)
        self.worker_ids[i] = wid
        await proc.wait_log(WORKER_READY, 180)
        self.worker_ready[i].set()

    async def held_job(self, i: int) -> int | None:
        wid = self.worker_ids[i]
        async with self.h.db.sessionmaker() as s:  # type: ignore[union-attr]
            return (
                await s.execute(
                    select(Job.id).where(Job.status == "running", Job.lease_owner == wid).limit(1)
                )
            ).scalar_one_or_none()

    async def pick_worker(self, timeout: float = 5.0) -> tuple[int, int | None] | None:
        """A ready worker, preferably one holding a job (waits up to ``timeout`` for one)."""
        deadline = time.monotonic() + timeout
        while True:
            ready = [
                i
                for i in range(len(self.workers))
                if self.worker_ready[i].is_set() and self.workers[i].running
            ]
            self.rng.shuffle(ready)
            for i in ready:
                job = await self.held_job(i)
                if job is not None:
                    return i, job
            if time.monotonic() > deadline and ready:
                return ready[0], None
            if time.monotonic() > deadline + 60:  # every worker still restarting (a slow, loaded machine)
                return None
            await asyncio.sleep(0.1)

    async def kill_worker(self) -> None:
        picked = await self.pick_worker()
        if picked is None:
            return
        i, job = picked
        self.worker_ready[i].clear()
        killed_at = time.time()
        await self.workers[i].stop(signal.SIGKILL, 5)
        self.report.worker_kills += 1
        if job is not None:
            self.report.kills_holding_a_job += 1
            self.pending_recovery[job] = killed_at
        await asyncio.sleep(self.rng.uniform(0, 1.0))
        self.spawn(self.start_worker(i))

    async def stop_worker(self) -> None:
        picked = await self.pick_worker()
        if picked is None:
            return
        i, job = picked
        pid = self.workers[i].pid
        assert pid is not None
        stopped_at = time.time()
        os.kill(pid, signal.SIGSTOP)
        self.report.stops += 1
        if job is not None:
            self.report.kills_holding_a_job += 1
            self.pending_recovery[job] = stopped_at
        try:
            await asyncio.sleep(self.cfg.lease_seconds + self.cfg.stop_extra)
        finally:
            os.kill(pid, signal.SIGCONT)

    async def kill_bot(self) -> None:
        self.bot_up.clear()
        await self.h.kill_bot()
        self.report.bot_kills += 1
        await asyncio.sleep(self.rng.uniform(0, 2.0))
        t0 = time.monotonic()
        await self.h.start_bot(timeout=120)
        self.report.bot_restart_seconds.append(time.monotonic() - t0)
        self.bot_up.set()

    def spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ------------------------------------------------------------------ load
    async def active_jobs(self) -> list[Job]:
        async with self.h.db.sessionmaker() as s:  # type: ignore[union-attr]
            return list((await s.execute(select(Job).where(Job.status.in_(("queued", "running"))))).scalars())

    async def submitter(self) -> None:
        h, cfg = self.h, self.cfg
        users = h.members
        for n in range(cfg.jobs):
            while True:
                await self.bot_up.wait()
                recent = sum(
                    1 for i in self.interactions[-cfg.in_flight :] if time.monotonic() - i.created < 3
                )
                if len(await self.active_jobs()) + recent < cfg.in_flight:
                    break
                await asyncio.sleep(0.1)
            user = self.rng.choice(users)
            self.interactions.append(await h.slash(user, "video", prompt=f"chaos {n}: a fox in the snow"))
            self.report.submitted += 1
            if self.rng.random() < cfg.cancel_rate:
                active = await self.active_jobs()
                if active:
                    job = self.rng.choice(active)
                    await h.slash(job.user_id, "cancel", job=job.id)
                    self.report.cancels += 1

    async def chaos(self, events: list[str], done: asyncio.Event) -> None:
        """Fire the events spread over the run, paced by how many jobs were submitted."""
        n = len(events)
        for k, event in enumerate(events):
            threshold = (k + 1) * self.cfg.jobs / (n + 1)
            while self.report.submitted < threshold and not done.is_set():
                await asyncio.sleep(0.1)
            if done.is_set():
                return
            await self.bot_up.wait()
            if event == "worker":
                await self.kill_worker()
            elif event == "stop":
                await self.stop_worker()
            else:
                await self.kill_bot()

    async def check_recoveries(self) -> None:
        if not self.pending_recovery:
            return
        async with self.h.db.sessionmaker() as s:  # type: ignore[union-attr]
            rows = (
                await s.execute(
                    select(Job.id, Job.started_at, Job.status).where(Job.id.in_(list(self.pending_recovery)))
                )
            ).all()
        for job_id, started_at, status in rows:
            at = self.pending_recovery[job_id]
            if started_at is not None and started_at > at:
                self.report.recoveries.append(started_at - at)
                del self.pending_recovery[job_id]
            elif status in FINAL:
                self.report.not_rerun += 1
                del self.pending_recovery[job_id]

    async def recovery_monitor(self) -> None:
        while True:
            await self.check_recoveries()
            await asyncio.sleep(0.25)

    async def settled(self) -> bool:
        if (
            self.report.submitted < self.cfg.jobs
            or any(not w.running for w in self.workers)
            or not self.bot_up.is_set()
        ):
            return False
        async with self.h.db.sessionmaker() as s:  # type: ignore[union-attr]
            jobs = list((await s.execute(select(Job))).scalars())
        pending_acks = [
            i for i in self.interactions if i.initial is None and time.monotonic() - i.created < 5
        ]
        return not pending_acks and all(j.status in FINAL and j.notified_at is not None for j in jobs)

    # ------------------------------------------------------------------ run
    async def run(self) -> ChaosReport:
        cfg, h = self.cfg, self.h
        t0 = time.monotonic()
        old_pg = os.environ.get(PG_ENV)
        if cfg.postgres:
            os.environ[PG_ENV] = cfg.postgres
        try:
            async with h:
                self.bot_up.set()
                for i in range(len(self.workers)):  # one at a time: the first builds the tiny model
                    await self.start_worker(i)
                events = ["worker"] * cfg.worker_kills + ["bot"] * cfg.bot_kills + ["stop"] * cfg.stops
                self.rng.shuffle(events)
                done = asyncio.Event()
                monitor = asyncio.create_task(self.recovery_monitor())
                chaos = asyncio.create_task(self.chaos(events, done))
                submitter = asyncio.create_task(self.submitter())
                deadline = t0 + cfg.deadline
                try:
                    while time.monotonic() < deadline:
                        if submitter.done():
                            submitter.result()
                        if chaos.done():
                            chaos.result()
                        if chaos.done() and not self.tasks and await self.settled():
                            self.report.settled = True
                            break
                        await asyncio.sleep(0.5)
                finally:
                    done.set()
                    for task in (submitter, chaos, monitor, *self.tasks):
                        task.cancel()
                    await asyncio.gather(submitter, chaos, monitor, *self.tasks, return_exceptions=True)
                    for w in self.workers:  # never leave a frozen worker behind
                        if w.running and w.pid:
                            os.kill(w.pid, signal.SIGCONT)
                    await self.measure()
                    for w in self.workers:
                        await w.stop()
        finally:
            if old_pg is None:
                os.environ.pop(PG_ENV, None)
            else:
                os.environ[PG_ENV] = old_pg
        self.report.wall_seconds = time.monotonic() - t0
        return self.report

    async def measure(self) -> None:
        h, r = self.h, self.report
        assert h.db is not None
        await self.check_recoveries()
        async with h.db.sessionmaker() as s:
            jobs = {j.id: j for j in (await s.execute(select(Job).order_by(Job.id))).scalars()}
            ledger = list((await s.execute(select(LedgerEntry))).scalars())
            users = {(j.guild_id, j.user_id) for j in jobs.values()}
            for guild_id, user_id in sorted(users):
                st = await quota.status(
                    s, guild_id, user_id, default_limit=self.cfg.jobs + 10, window_seconds=24 * 3600.0
                )
                total = await quota.ledger_sum(s, guild_id, user_id)
                if st.balance != st.limit + total:
                    r.ledger_problems.append(f"user {user_id}: balance {st.balance} != {st.limit} + {total}")
        r.acknowledged = sum(1 for i in self.interactions if i.initial is not None)
        by_key = {j.idempotency_key: j for j in jobs.values()}
        for i in self.interactions:
            if f"interaction:{i.id}" in by_key:
                continue
            text = (i.original or {}).get("content") or ""
            if text:
                r.refused += 1
            elif i.initial is not None:
                r.unanswered += 1
        r.accepted = sum(1 for j in jobs.values() if j.kind == "command")

        posts: Counter[int] = Counter()  # public result posts per job
        hidden: Counter[int] = Counter()  # result files in ephemeral messages (seen by the requester only)
        for m in h.fd.messages(h.channel_id, include_ephemeral=True):
            for a in m["attachments"]:
                found = re.fullmatch(r"videobot-(\d+)\.mp4", a["filename"])
                if found:
                    (hidden if m["ephemeral"] else posts)[int(found[1])] += 1
        r.delivered_twice = sum(1 for job_id in posts | hidden if posts[job_id] + hidden[job_id] > 1)
        r.delivered_privately = sum(1 for n in hidden.values() if n)

        rows: dict[int, Counter[str]] = {}
        for e in ledger:
            if e.job_id is not None:
                rows.setdefault(e.job_id, Counter())[e.kind] += 1
        for j in jobs.values():
            told = j.status in FINAL and j.notified_at is not None
            if j.status == "delivered":
                told = told and posts[j.id] >= 1
                r.delivered += told
            elif j.status == "failed":
                r.failed_refunded += rows.get(j.id, Counter())["refund"] == 1
            elif j.status == "cancelled":
                r.cancelled_refunded += rows.get(j.id, Counter())["refund"] == 1
            elif j.status == "undeliverable":
                r.undeliverable += 1
            if not told:
                r.lost_ids.append(j.id)
            want_refund = 1 if j.status in ("failed", "cancelled") else 0
            kinds = rows.get(j.id, Counter())
            if kinds["charge"] != 1 or kinds["refund"] != want_refund:
                r.ledger_problems.append(f"job {j.id} ({j.status}): {dict(kinds)}")
            r.retried_jobs += j.attempts > 1
        r.lost = len(r.lost_ids)
        r.ledger_mismatches = len(r.ledger_problems)

        done_lines: Counter[int] = Counter()
        fenced: set[tuple[str, int, int]] = set()
        for w in self.workers:
            start = 0
            for line in w.log().splitlines():
                if line.startswith("===== "):
                    start += 1
                    continue
                if not line.startswith("{"):
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                job_id = rec.get("job_id")
                if job_id is None:
                    continue
                msg = rec.get("msg", "")
                if re.match(r"job \d+ done in", msg):
                    done_lines[job_id] += 1
                elif "lease lost" in msg:
                    fenced.add((w.name, start, job_id))
        r.duplicate_completions = sum(n - 1 for n in done_lines.values() if n > 1)
        r.fenced_runs = len(fenced)


async def run_chaos(cfg: ChaosConfig, workdir: Path) -> ChaosReport:
    """Run one chaos session in ``workdir`` (logs and the database stay there) and return its figures."""
    return await Chaos(cfg, Path(workdir)).run()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    d = ChaosConfig()
    parser.add_argument("--jobs", type=int, default=d.jobs)
    parser.add_argument("--worker-kills", type=int, default=d.worker_kills)
    parser.add_argument("--bot-kills", type=int, default=d.bot_kills)
    parser.add_argument("--stops", type=int, default=d.stops)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--deadline", type=float, default=d.deadline, help="seconds for the whole run")
    parser.add_argument("--postgres", help="PostgreSQL admin URL (postgresql+asyncpg://...); default SQLite")
    parser.add_argument("--workers", type=int, default=d.workers)
    parser.add_argument("--users", type=int, default=d.users)
    parser.add_argument("--in-flight", type=int, default=d.in_flight)
    parser.add_argument("--keep", help="keep logs and the database in this folder")
    args = parser.parse_args()
    cfg = ChaosConfig(
        jobs=args.jobs, worker_kills=args.worker_kills, bot_kills=args.bot_kills, stops=args.stops,
        seed=args.seed, deadline=args.deadline, postgres=args.postgres, workers=args.workers,
        users=args.users, in_flight=args.in_flight,
    )  # fmt: skip
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        report = asyncio.run(run_chaos(cfg, Path(args.keep)))
    else:
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            report = asyncio.run(run_chaos(cfg, Path(tmp)))
    for line in report.lines():
        print(line)
    bad = report.lost or report.delivered_twice or report.duplicate_completions or report.ledger_mismatches
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
