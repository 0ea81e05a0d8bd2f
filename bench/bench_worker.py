"""Worker overhead: wall time per job through the queue vs bare ``pipe()`` + encode, and the idle gap.

Runs on the tiny model and a real SQLite file, side by side in one process:
  A) bare: ``VideoPipeline.run(params)`` then ``encode_mp4`` for N jobs in a loop;
  B) worker: the same N jobs submitted to the queue and run by ``generator.worker.Worker``
     (claim, heartbeats with progress and the cancel flag, encode, store, complete).
Repeats A/B ``--rounds`` times; each round's ratio is B / A of that round, reported as min/median/max. The idle gap is the time on the database clock
between one job's ``finished_at`` and the next job's ``started_at``. Also printed: B's wall time over
the worker's own time in the same jobs (each job's ``generation_seconds``: parameters read → encode
done), the overhead without the drift between the A and B halves of a round.

    python bench/bench_worker.py --jobs 20 --rounds 3 [--steps 8] [--noise]
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
from generator.worker import Worker
from videobot.db import Database
from videobot.jobs import JobQueue, QueueConfig, SubmitRequest
from videobot.migrate import upgrade
from videobot.models import Job
from videobot.presets import PRESETS, plan
from videobot.settings import Settings


class _Timed(Worker):
    """The real worker, which notes the time and stops once it has done ``jobs_wanted`` jobs."""

    jobs_wanted = 0
    finished_at = 0.0

    async def process(self, claim):  # type: ignore[no-untyped-def]
        following = await super().process(claim)
        if self.jobs_done >= self.jobs_wanted:
            self.finished_at = time.perf_counter()
            self.stop()
        return following


def bare(pipe: VideoPipeline, params_list: list) -> float:  # type: ignore[type-arg]
    t0 = time.perf_counter()
    for p in params_list:
        encode_mp4(pipe.run(p).frames, p.fps)
    return (time.perf_counter() - t0) / len(params_list)


async def through_worker(
    pipe: VideoPipeline, params_list: list, data: Path, tag: str
) -> tuple[float, list[float], float]:  # type: ignore[type-arg]
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
    t0 = time.perf_counter()
    await worker.run()  # stops itself after the last job (no polling loop beside the worker)
    elapsed = worker.finished_at - t0
    async with db.sessionmaker() as s:
        rows = (
            await s.execute(
                select(Job.started_at, Job.finished_at, Job.generation_seconds).order_by(Job.started_at)
            )
        ).all()
    gaps = [b.started_at - a.finished_at for a, b in zip(rows, rows[1:], strict=False)]
    await db.dispose()
    # The worker's own time per job from reading its parameters to the end of the encode (what the
    # job stores as generation_seconds): wall / that is the overhead in the same jobs, which the
    # machine's drift between the bare half and the worker half of a round does not touch.
    rendering = sum(r.generation_seconds for r in rows)
    return elapsed / len(params_list), gaps, elapsed / rendering


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument(
        "--noise",
        action="store_true",
        help="instead of the worker, run the bare loop twice per round: the ratio of a thing to itself, "
        "i.e. how far this machine moves a round's ratio with no overhead at all",
    )
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="videobot-bench-"))
    build_tiny_model(data / "models" / "tiny")
    pipe = VideoPipeline.load("tiny", data_dir=data, device="cpu")
    params_list = []
    for i in range(args.jobs):
        p = plan(PRESETS["tiny"], f"bench clip {i}", seed=i).to_dict()
        p["num_inference_steps"] = args.steps
        from videobot.presets import GenerationParams

        params_list.append(GenerationParams.from_dict(p))
    bare(pipe, params_list[:2])  # warm-up
    if args.noise:
        same = []
        for _ in range(args.rounds):
            first = bare(pipe, params_list)
            same.append(bare(pipe, params_list) / first)
        print(f"jobs={args.jobs} rounds={args.rounds} steps={args.steps}: bare / bare, no worker")
        print(f"ratio per round: {', '.join(f'{r:.3f}' for r in same)}")
        print(f"ratio min / median / max: {min(same):.3f} / {statistics.median(same):.3f} / {max(same):.3f}")
        return
    a, b, all_gaps, inside = [], [], [], []
    for r in range(args.rounds):
        a.append(bare(pipe, params_list))
        per_job, gaps, own = await through_worker(pipe, params_list, data, f"r{r}")
        b.append(per_job)
        all_gaps += gaps
        inside.append(own)
    ma, mb = statistics.median(a), statistics.median(b)
    ratios = [y / x for x, y in zip(a, b, strict=True)]
    print(f"jobs={args.jobs} rounds={args.rounds} steps={args.steps}")
    print(
        f"bare pipe()+encode per job: {ma * 1000:.1f} ms (rounds: {', '.join(f'{x * 1000:.1f}' for x in a)})"
    )
    print(
        f"worker per job:             {mb * 1000:.1f} ms (rounds: {', '.join(f'{x * 1000:.1f}' for x in b)})"
    )
    print(f"ratio worker / bare per round: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(
        f"ratio min / median / max:   {min(ratios):.3f} / {statistics.median(ratios):.3f} / {max(ratios):.3f}"
        "  (goal <= 1.05 in every round)"
    )
    print(
        f"worker wall / its own render+encode time per round: min / median / max "
        f"{min(inside):.3f} / {statistics.median(inside):.3f} / {max(inside):.3f}"
    )
    gs = sorted(all_gaps)
    print(
        f"idle gap between jobs:      median {statistics.median(gs) * 1000:.1f} ms, p95 {gs[int(0.95 * (len(gs) - 1))] * 1000:.1f} ms, max {gs[-1] * 1000:.1f} ms  (goal < 50 ms)"
    )


if __name__ == "__main__":
    asyncio.run(main())
