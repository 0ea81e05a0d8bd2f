"""``/healthz`` and ``/metrics`` (Prometheus) on a local HTTP port, served by the bot process.

``/healthz`` is cheap, so a monitor may poll it often: a ``SELECT 1`` ping and one look at the
newest worker heartbeat, each a read (it never waits behind a writer) under a time limit.

``/metrics``: queue-wide figures (jobs by status, queue depth, credits, generation time, workers'
GPU memory) are read from the database at scrape time, so they cover every worker of a fleet;
in-process figures (acknowledgement latency) come from this process's own metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from videobot.db import Database, db_now
from videobot.models import Job, JobStatus, LedgerEntry, LedgerKind, WorkerHeartbeat

log = logging.getLogger(__name__)

#: Each database step of /healthz (the ping, the heartbeat lookup) must answer within this.
HEALTH_DB_TIMEOUT_SECONDS = 2.0

GENERATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

#: In-process metrics, registered on the registry the bot's health server exports.
REGISTRY = CollectorRegistry(auto_describe=True)
ACK_LATENCY = Histogram(
    "videobot_ack_latency_seconds",
    "Time from an interaction's creation to the bot's first response",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
    registry=REGISTRY,
)


def record_ack(created_at: datetime) -> None:
    """Observe one acknowledgement: now minus the interaction's creation time (from its snowflake)."""
    ACK_LATENCY.observe(max(0.0, time.time() - created_at.timestamp()))


@dataclass
class QueueSnapshot:
    by_status: dict[str, int]
    queue_depth: int
    charged: int
    refunded: int
    generation_buckets: list[tuple[float, int]]
    generation_count: int
    generation_sum: float
    workers: list[tuple[str, float, int | None]]  # (worker id, seconds since seen, gpu bytes)
    step_buckets: list[tuple[float, int]] = field(default_factory=list)
    step_count: int = 0
    step_sum: float = 0.0
    #: model -> (seconds per step, peak GPU bytes) of its most recently finished job
    last_job: dict[str, tuple[float | None, int | None]] = field(default_factory=dict)


async def snapshot(db: Database) -> QueueSnapshot:
    async with db.sessionmaker() as s:
        by_status = dict((await s.execute(select(Job.status, func.count()).group_by(Job.status))).all())
        credits = dict(
            (
                await s.execute(
                    select(LedgerEntry.kind, func.coalesce(func.sum(LedgerEntry.amount), 0)).group_by(
                        LedgerEntry.kind
                    )
                )
            ).all()
        )
        done = Job.generation_seconds.is_not(None)
        cols = [
            func.coalesce(func.sum(case((Job.generation_seconds <= b, 1), else_=0)), 0)
            for b in GENERATION_BUCKETS
        ]
        row = (
            await s.execute(
                select(func.count(), func.coalesce(func.sum(Job.generation_seconds), 0.0), *cols).where(done)
            )
        ).one()
        timed = Job.seconds_per_step.is_not(None)
        step_cols = [
            func.coalesce(func.sum(case((Job.seconds_per_step <= b, 1), else_=0)), 0) for b in STEP_BUCKETS
        ]
        steps = (
            await s.execute(
                select(func.count(), func.coalesce(func.sum(Job.seconds_per_step), 0.0), *step_cols).where(
                    timed
                )
            )
        ).one()
        latest = (
            select(Job.model, func.max(Job.finished_at).label("finished_at"))
            .where(timed | Job.peak_gpu_bytes.is_not(None))
            .group_by(Job.model)
            .subquery()
        )
        last_job = (
            await s.execute(
                select(Job.model, Job.seconds_per_step, Job.peak_gpu_bytes).join(
                    latest, (Job.model == latest.c.model) & (Job.finished_at == latest.c.finished_at)
                )
            )
        ).all()
        workers = (
            await s.execute(
                select(
                    WorkerHeartbeat.worker_id,
                    db_now() - WorkerHeartbeat.seen_at,
                    WorkerHeartbeat.gpu_memory_bytes,
                )
            )
        ).all()
    return QueueSnapshot(
        by_status={str(k): int(v) for k, v in by_status.items()},
        queue_depth=int(by_status.get(JobStatus.QUEUED.value, 0)),
        charged=-int(credits.get(LedgerKind.CHARGE.value, 0)),
        refunded=int(credits.get(LedgerKind.REFUND.value, 0))
        + int(credits.get(LedgerKind.PARTIAL_REFUND.value, 0)),
        generation_buckets=[(b, int(n)) for b, n in zip(GENERATION_BUCKETS, row[2:], strict=True)],
        generation_count=int(row[0]),
        generation_sum=float(row[1]),
        workers=[(w, float(age), gpu) for w, age, gpu in workers],
        step_buckets=[(b, int(n)) for b, n in zip(STEP_BUCKETS, steps[2:], strict=True)],
        step_count=int(steps[0]),
        step_sum=float(steps[1]),
        last_job={m: (sps, peak) for m, sps, peak in last_job},
    )


async def fresh_workers(db: Database, stale_seconds: float) -> int:
    """How many workers sent a heartbeat in the last ``stale_seconds`` (database clock).

    The workers table holds one row per worker process (a stopping worker deletes its own), so
    this reads a handful of rows, not the jobs table.
    """
    async with db.sessionmaker() as s:
        stmt = select(func.count()).where(WorkerHeartbeat.seen_at >= db_now() - stale_seconds)
        return int((await s.execute(stmt)).scalar_one())


class QueueCollector(Collector):
    """Exports the database's view of the queue; filled by ``refresh()`` just before each scrape."""

    def __init__(self) -> None:
        self.snap: QueueSnapshot | None = None

    def collect(self) -> Iterable[object]:
        snap = self.snap
        if snap is None:
            return
        jobs = GaugeMetricFamily("videobot_jobs", "Jobs by status", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], snap.by_status.get(status.value, 0))
        yield jobs
        yield GaugeMetricFamily("videobot_queue_depth", "Jobs waiting to be claimed", value=snap.queue_depth)
        yield CounterMetricFamily("videobot_credits_charged", "Credits charged for jobs", value=snap.charged)
        yield CounterMetricFamily(
            "videobot_credits_refunded", "Credits refunded for failed or cancelled jobs", value=snap.refunded
        )
        hist = HistogramMetricFamily(
            "videobot_generation_seconds", "Worker time per finished job (run + encode)"
        )
        hist.add_metric(
            [],
            [(str(b), n) for b, n in snap.generation_buckets] + [("+Inf", snap.generation_count)],
            snap.generation_sum,
        )
        yield hist
        seen = GaugeMetricFamily(
            "videobot_worker_last_seen_seconds",
            "Seconds since each worker's last heartbeat",
            labels=["worker"],
        )
        gpu = GaugeMetricFamily(
            "videobot_worker_gpu_memory_bytes", "Peak GPU memory allocated by each worker", labels=["worker"]
        )
        for worker, age, mem in snap.workers:
            seen.add_metric([worker], age)
            if mem is not None:
                gpu.add_metric([worker], mem)
        yield seen
        yield gpu
        steps = HistogramMetricFamily(
            "videobot_step_seconds", "Mean seconds per denoising step of each finished job"
        )
        steps.add_metric(
            [], [(str(b), n) for b, n in snap.step_buckets] + [("+Inf", snap.step_count)], snap.step_sum
        )
        yield steps
        last_sps = GaugeMetricFamily(
            "videobot_last_job_seconds_per_step",
            "Mean seconds per denoising step of the latest finished job, per model",
            labels=["model"],
        )
        last_peak = GaugeMetricFamily(
            "videobot_last_job_peak_gpu_bytes",
            "Peak GPU memory allocated by the latest finished job, per model",
            labels=["model"],
        )
        for model, (sps, peak) in sorted(snap.last_job.items()):
            if sps is not None:
                last_sps.add_metric([model], sps)
            if peak is not None:
                last_peak.add_metric([model], peak)
        yield last_sps
        yield last_peak


class HealthServer:
    """aiohttp app with /healthz and /metrics.

    ``discord_problem`` returns None while Discord is connected, else why it is not
    (``discord: not connected (cannot reach Discord: DNS lookup failed for discord.com, retrying)``).
    """

    def __init__(
        self,
        db: Database,
        *,
        discord_problem: Callable[[], str | None],
        worker_stale_seconds: float = 60.0,
        db_timeout_seconds: float = HEALTH_DB_TIMEOUT_SECONDS,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.db = db
        self.discord_problem = discord_problem
        self.worker_stale_seconds = worker_stale_seconds
        self.db_timeout_seconds = db_timeout_seconds
        self.registry = registry
        self.collector = QueueCollector()
        registry.register(self.collector)
        self.runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def healthz(self, request: web.Request) -> web.Response:
        problems = []
        discord_problem = self.discord_problem()
        if discord_problem:
            problems.append(discord_problem)
        limit = self.db_timeout_seconds
        workers = 0
        try:
            await asyncio.wait_for(self.db.ping(), limit)
        except TimeoutError:
            problems.append(f"database did not answer within {limit:g} s")
        except Exception as exc:  # any failure to read means the database is not usable
            problems.append(f"database unreachable ({type(exc).__name__})")
        else:
            try:
                workers = await asyncio.wait_for(fresh_workers(self.db, self.worker_stale_seconds), limit)
            except TimeoutError:
                problems.append(f"worker heartbeat lookup did not answer within {limit:g} s")
            except Exception as exc:
                problems.append(f"worker heartbeat lookup failed ({type(exc).__name__})")
            else:
                if not workers:
                    problems.append(f"no worker heartbeat in the last {self.worker_stale_seconds:.0f} s")
        if problems:
            log.debug("/healthz: %s", "; ".join(problems))
            return web.json_response({"ok": False, "problems": problems}, status=503)
        return web.json_response({"ok": True, "workers": workers})

    async def metrics(self, request: web.Request) -> web.Response:
        try:
            self.collector.snap = await snapshot(self.db)
        except Exception:
            log.warning("metrics: database unreachable", exc_info=True)
            self.collector.snap = None
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, host: str, port: int) -> int:
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("health and metrics on http://%s:%s/healthz and /metrics", host, self.port)
        return self.port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        self.registry.unregister(self.collector)
