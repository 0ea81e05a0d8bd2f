"""Read latency beside a writer on SQLite: a read session vs a write transaction used for reading.

One process, one SQLite file (WAL), two ``Database`` objects. Each round, one transaction holds the
write lock for ``--hold`` seconds while the other ``Database`` reads a job with ``queue.get``-style
SQL, once in a read session (``db.sessionmaker()``: deferred, read-only) and once in
``db.transaction()`` (``BEGIN IMMEDIATE``: how every read ran before reads got their own sessions).
Prints min/median/max over ``--rounds`` for both, side by side.

    python bench/bench_reads.py --rounds 7 --hold 1.0
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from videobot.db import Database
from videobot.jobs import JobQueue, QueueConfig, SubmitRequest
from videobot.migrate import upgrade
from videobot.models import Job


async def read_while_locked(
    writer: Database, open_session: Callable[[], Any], job_id: int, hold: float
) -> float:
    """Seconds one read took while ``writer`` held the write lock for ``hold`` seconds."""
    holding = asyncio.Event()

    async def hold_lock() -> None:
        async with writer.transaction() as s:
            await s.execute(update(Job).where(Job.id == job_id).values(progress_step=Job.progress_step + 1))
            holding.set()
            await asyncio.sleep(hold)

    task = asyncio.create_task(hold_lock())
    await holding.wait()
    t0 = time.perf_counter()
    async with open_session() as s:
        (await s.execute(select(Job).where(Job.id == job_id))).scalar_one()
    took = time.perf_counter() - t0
    await task
    return took


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--hold", type=float, default=1.0, help="seconds the writer holds the lock")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="videobot-bench-"))
    url = f"sqlite+aiosqlite:///{folder / 'q.db'}"
    upgrade(url)
    writer, reader = Database(url), Database(url)
    req = SubmitRequest(idempotency_key="bench", guild_id=1, channel_id=1, user_id=1, model="tiny", params={})
    job_id = (await JobQueue(writer, QueueConfig()).submit(req)).job.id
    times: dict[str, list[float]] = {"read session": [], "write transaction": []}
    for _ in range(args.rounds):
        times["read session"].append(await read_while_locked(writer, reader.sessionmaker, job_id, args.hold))
        times["write transaction"].append(
            await read_while_locked(writer, reader.transaction, job_id, args.hold)
        )
    print(f"read latency while a writer holds the lock for {args.hold:g} s ({args.rounds} rounds)")
    for name, xs in times.items():
        print(
            f"  {name:18} min {min(xs) * 1000:8.1f} ms  median {statistics.median(xs) * 1000:8.1f} ms"
            f"  max {max(xs) * 1000:8.1f} ms"
        )
    await writer.dispose()
    await reader.dispose()
    shutil.rmtree(folder)


if __name__ == "__main__":
    asyncio.run(main())
