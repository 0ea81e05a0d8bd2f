"""Worker overhead: wall time per job through the queue vs bare ``pipe()`` + encode, and the idle gap.

Runs on the tiny model and a real SQLite file, in one process:
  A) bare: ``VideoPipeline.run(params)`` then ``encode_mp4``, timed job by job;
  B) worker: the same jobs submitted to the queue and run by ``generator.worker.Worker`` (claim,
     heartbeats with progress and the cancel flag, encode, store, complete).
A and B are interleaved job by job: the worker's ``process`` runs the bare job of the same parameters
just before its own (just after, in every other round), timed apart and left out of the worker's time.
So both sides of a round's ratio see the same moments of this shared machine; with A and B as two
halves one after the other (``--halves``, the layout before 2026-12-01), a slow spell that hit one half
moved a round's ratio by up to ±8 % with no overhead at all. Each round's ratio is B / A of that round,
reported as min/median/max. The idle gap is the time on the database clock between one job's
``finished_at`` and the next job's ``started_at``. Also printed: B's wall time over the worker's own
time in the same jobs (each job's ``generation_seconds``: parameters read → encode done).

``--noise`` replaces the worker by a second bare run of each job (the same interleaving): the ratio
of a thing to itself, i.e. how far this machine moves a round's ratio with no overhead at all.

    python bench/bench_worker.py --jobs 40 --rounds 8 [--steps 8] [--noise] [--halves]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from generator.encode import encode_mp4
from generator.pipeline import VideoPipeline
from generator.tiny import build_tiny_model
from generator.worker import Worker, freeze_loaded_objects
from videobot.db import Database
from videobot.jobs import JobQueue, QueueConfig, SubmitRequest
from videobot.migrate import upgrade
from videobot.models import Job
from videobot.presets import PRESETS, GenerationParams, plan
from videobot.settings import Settings


def bare_job(pipe: VideoPipeline, p: GenerationParams) -> float:
    """Seconds for one job without the worker: ``pipe.run`` then ``encode_mp4``."""
    t0 = time.perf_counter()
    encode_mp4(pipe.run(p).frames, p.fps)
    return time.perf_counter() - t0


def bare(pipe: VideoPipeline, params_list: list[GenerationParams]) -> float:
    return sum(bare_job(pipe, p) for p in params_list) / len(params_list)


class _Timed(Worker):
    """The real worker, which stops once it has done ``jobs_wanted`` jobs. With ``beside`` set, each
    ``process`` also runs the job's bare twin (before the worker's own run, or after it when
    ``beside == "after"``), in a thread as the worker renders; ``pairs`` gets (worker, twin) seconds
    per job: the twin's inside its thread, the worker's from one ``process`` to the next less the
    twin's whole wait (its hand-over to the thread belongs to the bench, not to the worker)."""

    jobs_wanted = 0
    finished_at = 0.0
    beside: str | None = None
    twin_seconds = 0.0  # the twins inside their thread
    twin_waits = 0.0  # the twins as awaited, hand-overs included

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.pairs: list[tuple[float, float]] = []
        self._entered: float | None = None
        self._twin = self._wait = 0.0

    def _close_pair(self, now: float) -> None:
        if self._entered is not None:
            self.pairs.append((now - self._entered - self._wait, self._twin))

    async def _run_twin(self, params: GenerationParams) -> None:
        t0 = time.perf_counter()
        self._twin = await asyncio.to_thread(bare_job, self.pipeline, params)
        self._wait = time.perf_counter() - t0
        self.twin_seconds += self._twin
        self.twin_waits += self._wait

    async def process(self, claim):  # type: ignore[no-untyped-def]
        self._close_pair(time.perf_counter())
        self._entered, self._twin, self._wait = time.perf_counter(), 0.0, 0.0
        if self.beside == "before":
            await self._run_twin(GenerationParams.from_dict(claim.params))
        following = await super().process(claim)
        if self.beside == "after":
            await self._run_twin(GenerationParams.from_dict(claim.params))
        if self.jobs_done >= self.jobs_wanted:
            self.finished_at = time.perf_counter()
            self._close_pair(self.finished_at)
            self.stop()
        return following


async def through_worker(
    pipe: VideoPipeline, params_list: list[GenerationParams], data: Path, tag: str, beside: str | None = None
) -> tuple[float, float | None, list[float], float, list[tuple[float, float]]]:
    """Per-job seconds of the worker (and of the bare twins when ``beside``), the idle gaps, the
    worker's wall time over its own render+encode time, and (worker, twin) seconds job by job."""
    url = f"sqlite+aiosqlite:///{data / f'bench-{tag}.db'}"
    upgrade(url)
    db = Database(url)
    q = JobQueue(db, QueueConfig(default_limit=10**6, max_queued_per_user=10**6))
    for i, p in enumerate(params_list):
        await q.submit(
            SubmitRequest(
                idempotency_key=f"{tag}-{i}",
                guild_id=1,
                channel_id=1,
                user_id=1,
                model="tiny",
                params=p.to_dict(),
            )
        )
    settings = Settings(
        _env_file=None,
        VIDEOBOT_DATA_DIR=str(data),
        DATABASE_URL=url,
        VIDEOBOT_MODEL="tiny",
        VIDEOBOT_POLL_SECONDS=0.05,
    )  # type: ignore[call-arg]
    worker = _Timed(settings, q, pipe, worker_id="bench", models=["tiny"])
    worker.jobs_wanted = len(params_list)
    worker.beside = beside
    t0 = time.perf_counter()
    await worker.run()  # stops itself after the last job (no polling loop beside the worker)
    elapsed = worker.finished_at - t0 - worker.twin_waits
    async with db.sessionmaker() as s:
        rows = (
            await s.execute(
                select(Job.started_at, Job.finished_at, Job.generation_seconds).order_by(Job.started_at)
            )
        ).all()
    gaps = [b.started_at - a.finished_at for a, b in zip(rows, rows[1:], strict=False)]
    await db.dispose()
    # The worker's own time per job from reading its parameters to the end of the encode (what the
    # job stores as generation_seconds): wall / that is the overhead in the same jobs.
    rendering = sum(r.generation_seconds for r in rows)
    n = len(params_list)
    return elapsed / n, (worker.twin_seconds / n if beside else None), gaps, elapsed / rendering, worker.pairs


async def interleaved_noise(
    pipe: VideoPipeline, params_list: list[GenerationParams], second_first: bool
) -> list[tuple[float, float]]:
    """Two bare runs of each job one after the other (in a thread, as the worker renders):
    (second, first) seconds job by job, shaped like the worker's (worker, twin) pairs."""
    pairs = []
    for p in params_list:
        if second_first:
            second = await asyncio.to_thread(bare_job, pipe, p)
            first = await asyncio.to_thread(bare_job, pipe, p)
        else:
            first = await asyncio.to_thread(bare_job, pipe, p)
            second = await asyncio.to_thread(bare_job, pipe, p)
        pairs.append((second, first))
    return pairs


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


def per_job_median(pairs: list[tuple[float, float]]) -> float:
    """The median over a round's jobs of (measured / bare twin): a slow spell of the machine that hits
    one job of a pair moves that job's ratio, not the round's figure."""
    return statistics.median(x / y for x, y in pairs)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument(
        "--noise",
        action="store_true",
        help="instead of the worker, run each bare job twice: the ratio of a thing to itself, "
        "i.e. how far this machine moves a round's ratio with no overhead at all",
    )
    ap.add_argument(
        "--halves",
        action="store_true",
        help="the layout before 2026-12-01: all bare jobs, then all worker jobs (each round)",
    )
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="videobot-bench-"))
    build_tiny_model(data / "models" / "tiny")
    pipe = VideoPipeline.load("tiny", data_dir=data, device="cpu")
    params_list = []
    for i in range(args.jobs):
        p = plan(PRESETS["tiny"], f"bench clip {i}", seed=i).to_dict()
        p["num_inference_steps"] = args.steps
        params_list.append(GenerationParams.from_dict(p))
    bare(pipe, params_list[:2])  # warm-up
    freeze_loaded_objects()  # as ``videobot worker`` does once its model is loaded
    layout = "halves: all bare jobs, then all worker jobs" if args.halves else "interleaved job by job"
    print(f"jobs={args.jobs} rounds={args.rounds} steps={args.steps} ({layout})")
    if args.noise:
        totals, medians = [], []
        for r in range(args.rounds):
            if args.halves:
                first = bare(pipe, params_list)
                totals.append(bare(pipe, params_list) / first)
            else:
                pairs = await interleaved_noise(pipe, params_list, second_first=r % 2 == 1)
                totals.append(sum(x for x, _ in pairs) / sum(y for _, y in pairs))
                medians.append(per_job_median(pairs))
        print("bare / bare, no worker")
        print(f"ratio of totals per round:      {', '.join(f'{r:.3f}' for r in totals)}")
        print(f"  min / median / max:           {spread(totals)}")
        if medians:
            print(f"median per-job ratio per round: {', '.join(f'{r:.3f}' for r in medians)}")
            print(f"  min / median / max:           {spread(medians)}")
        return
    a, b, all_gaps, inside, medians = [], [], [], [], []
    for r in range(args.rounds):
        if args.halves:
            a.append(bare(pipe, params_list))
            per_job, _, gaps, own, _ = await through_worker(pipe, params_list, data, f"r{r}")
        else:
            beside = "after" if r % 2 else "before"
            per_job, twin, gaps, own, pairs = await through_worker(pipe, params_list, data, f"r{r}", beside)
            assert twin is not None
            a.append(twin)
            medians.append(per_job_median(pairs))
        b.append(per_job)
        all_gaps += gaps
        inside.append(own)
    ma, mb = statistics.median(a), statistics.median(b)
    ratios = [y / x for x, y in zip(a, b, strict=True)]
    print(
        f"bare pipe()+encode per job: {ma * 1000:.1f} ms (rounds: {', '.join(f'{x * 1000:.1f}' for x in a)})"
    )
    print(
        f"worker per job:             {mb * 1000:.1f} ms (rounds: {', '.join(f'{x * 1000:.1f}' for x in b)})"
    )
    print("worker / bare (goal <= 1.05 in every round):")
    print(f"ratio of totals per round:      {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"  min / median / max:           {spread(ratios)}")
    if medians:
        print(f"median per-job ratio per round: {', '.join(f'{r:.3f}' for r in medians)}")
        print(f"  min / median / max:           {spread(medians)}")
    print(f"worker wall / its own render+encode time per round: min / median / max {spread(inside)}")
    gs = sorted(all_gaps)
    print(
        f"idle gap between jobs:      median {statistics.median(gs) * 1000:.1f} ms, p95 {gs[int(0.95 * (len(gs) - 1))] * 1000:.1f} ms, max {gs[-1] * 1000:.1f} ms  (goal < 50 ms)"
    )


if __name__ == "__main__":
    asyncio.run(main())
