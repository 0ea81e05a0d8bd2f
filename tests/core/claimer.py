"""A worker stand-in for the multi-process claim test: claims and completes jobs until none are left.

Prints one claimed job id per line. Any database error (e.g. "database is locked") crashes it.
"""

from __future__ import annotations

import asyncio
import sys

from videobot.db import Database
from videobot.jobs import JobQueue, QueueConfig, ResultData


async def main(url: str, owner: str) -> None:
    db = Database(url)
    q = JobQueue(db, QueueConfig(lease_seconds=300))
    empty_since = None
    loop = asyncio.get_running_loop()
    while True:
        c = await q.claim(owner)
        if c is None:
            empty_since = empty_since or loop.time()
            if loop.time() - empty_since > 1.0:
                break
            await asyncio.sleep(0.01)
            continue
        empty_since = None
        await q.heartbeat(c, (1, 1))
        await q.complete(c, ResultData(video=b"v", width=2, height=2, num_frames=1, fps=1, duration_s=1))
        print(c.job_id, flush=True)
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
