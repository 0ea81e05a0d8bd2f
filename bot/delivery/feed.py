"""The bot's view of job changes: a cursor over ``JobQueue.changes_since`` on the database clock, the
jobs PostgreSQL named in a ``NOTIFY``, and the sweep of everything still owed (at start-up and every
minute, whatever the feed said).

Why the cursor alone is not enough on PostgreSQL: a transaction stamps ``updated_at`` when its
statement runs, but others see the change only at commit, which can come later (a multi-MB result, a
slow disk); meanwhile other jobs' changes move the cursor past that stamp plus the overlap. So the
transitions the bot cares about ``NOTIFY videobot_jobs, '<job ids>'``, which PostgreSQL delivers at
commit; ``JobFeed.listen`` holds one dedicated connection that LISTENs (reconnecting when it is lost),
wakes the delivery loop, and the next ``read()`` fetches the named jobs by id. SQLite has no NOTIFY
and needs none: its writers are serialised, so no change can commit behind the cursor; the bot polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from videobot.db import asyncpg_connect_args
from videobot.jobs import NOTIFY_CHANNEL, JobQueue
from videobot.models import Job

log = logging.getLogger(__name__)

#: Seconds the feed query reaches back behind the cursor (PostgreSQL commits can land out of order).
OVERLAP_SECONDS = 2.0
FEED_LIMIT = 200
#: Seconds between checks that the LISTEN connection is alive, and the longest wait to reconnect.
LISTEN_PING_SECONDS = 15.0
LISTEN_MAX_BACKOFF_SECONDS = 30.0
#: How the LISTEN connection shows in ``pg_stat_activity``.
LISTEN_APPLICATION_NAME = "videobot-feed"


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
        #: Job ids named by NOTIFY since the last read.
        self._notified: set[int] = set()
        self._listener: asyncio.Task[None] | None = None
        #: True while the LISTEN connection is up (PostgreSQL).
        self.listening = False

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
        """Jobs changed since the last read, and the jobs NOTIFY named (each change once)."""
        since = self._cursor - (0.0 if self._saturated else OVERLAP_SECONDS)
        notified, self._notified = self._notified, set()
        try:
            # Ids and stamps first: the overlap re-reads up to OVERLAP_SECONDS of changes each time,
            # and only the jobs not seen in that state are loaded.
            changed = await self.queue.changes_since(since, limit=FEED_LIMIT)
            wanted = [i for i, stamp in changed if self._seen.get(i) != stamp]
            wanted += sorted(notified - {i for i, _ in changed})
            loaded = {j.id: j for j in await self.queue.get_many(wanted)}
        except BaseException:
            self._notified |= notified  # read them next time
            raise
        self._saturated = len(changed) >= FEED_LIMIT
        fresh = [loaded[i] for i in wanted if i in loaded and self._seen.get(i) != loaded[i].updated_at]
        for _, stamp in changed:
            self._cursor = max(self._cursor, stamp)
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

    # ------------------------------------------------------------------ PostgreSQL LISTEN
    def listen(self, wake: Callable[[], None]) -> None:
        """PostgreSQL: LISTEN for job changes on a dedicated connection and ``wake()`` on each (no-op on
        SQLite). The connection is re-opened whenever it is lost; ``close()`` stops it."""
        if self.queue.db.dialect != "postgresql" or self._listener is not None:
            return
        self._listener = asyncio.create_task(self._listen(wake), name="job-feed-listen")

    async def close(self) -> None:
        task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _listen(self, wake: Callable[[], None]) -> None:
        import asyncpg

        # The engine's own reading of the URL: a unix socket, ssl, several hosts reach the same server.
        args = asyncpg_connect_args(self.queue.db.url)
        args["server_settings"] = {
            **(args.get("server_settings") or {}),
            "application_name": LISTEN_APPLICATION_NAME,
        }
        args.setdefault("timeout", 10)
        backoff = 0.0
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(**args)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())

                def on_notify(_c: object, _pid: int, _channel: str, payload: str) -> None:
                    self._notified.update(int(p) for p in payload.split(",") if p.isdigit())
                    wake()

                await conn.add_listener(NOTIFY_CHANNEL, on_notify)
                self.listening = True
                backoff = 0.0
                log.info("listening for job changes (PostgreSQL NOTIFY %s)", NOTIFY_CHANNEL)
                wake()  # anything that happened while not listening: read the feed now
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), LISTEN_PING_SECONDS)
                    if not lost.is_set():
                        await asyncio.wait_for(conn.execute("SELECT 1"), 10)
                log.warning("job-change listener: connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "job-change listener: %s (%s); polling meanwhile", type(exc).__name__, str(exc)[:200]
                )
            finally:
                self.listening = False
                if conn is not None:
                    conn.terminate()
            backoff = min(max(backoff * 2, 1.0), LISTEN_MAX_BACKOFF_SECONDS)
            await asyncio.sleep(backoff)
