"""The bot's view of job changes: a cursor over ``JobQueue.changed_since`` on the database clock, and
the sweep of everything still owed (at start-up and every minute, whatever the feed said).
"""

from __future__ import annotations

import time

from videobot.jobs import JobQueue
from videobot.models import Job

#: Seconds the feed query reaches back behind the cursor (PostgreSQL commits can land out of order).
OVERLAP_SECONDS = 2.0
FEED_LIMIT = 200


class JobFeed:
    """Reads job changes once each: ``read()`` returns only changes not handed out before."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        #: The database clock when this process started reading (None until the first read).
        self.started_db: float | None = None
        self._clock_offset = 0.0
        self._cursor = 0.0
        self._saturated = False
        self._seen: dict[int, float] = {}

    async def sync_clock(self) -> float:
        """Read the database clock (and remember its offset from this machine's clock)."""
        now = await self.queue.db_now()
        self._clock_offset = now - time.time()
        if self.started_db is None:
            self.started_db = now
            self._cursor = now - OVERLAP_SECONDS
        return now

    def db_clock(self) -> float:
        """The database clock, estimated locally."""
        return time.time() + self._clock_offset

    @property
    def saturated(self) -> bool:
        """The last read hit the limit: there is more to read right away."""
        return self._saturated

    async def read(self) -> list[Job]:
        """Jobs changed since the last read (each change once)."""
        since = self._cursor - (0.0 if self._saturated else OVERLAP_SECONDS)
        changed = await self.queue.changed_since(since, limit=FEED_LIMIT)
        self._saturated = len(changed) >= FEED_LIMIT
        fresh = [j for j in changed if self._seen.get(j.id) != j.updated_at]
        for job in changed:
            self._cursor = max(self._cursor, job.updated_at)
        for job in fresh:
            self._seen[job.id] = job.updated_at
        if len(self._seen) > 5000:
            floor = self._cursor - 10 * OVERLAP_SECONDS
            self._seen = {k: v for k, v in self._seen.items() if v >= floor}
        return fresh

    async def sweep(self) -> list[Job]:
        """Everything still owed (results, notices, live status messages), marked as seen."""
        jobs = await self.queue.owed()
        for job in jobs:
            self._seen[job.id] = job.updated_at
        return jobs
