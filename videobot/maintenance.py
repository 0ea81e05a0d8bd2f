"""Housekeeping that must happen even when no worker is alive, run by the one bot per database.

* keep the bot lock (``videobot.botlock``);
* stale leases: jobs whose worker died go back to the queue (workers do this too, between jobs);
* jobs that waited in the queue longer than ``VIDEOBOT_QUEUE_EXPIRY_HOURS``: cancelled, refunded,
  and the requester told (by the delivery loop, which ``on_change`` wakes);
* stored videos: removed ``VIDEOBOT_RESULT_RETENTION_HOURS`` after they were posted, and videos
  never posted within that time are given up (refunded) and removed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from videobot.botlock import AnotherBotRunning, BotLock
from videobot.jobs import JobQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaintenanceConfig:
    retention_seconds: float
    queue_expiry_seconds: float
    lease_seconds: float
    lock_renew_seconds: float = 5.0
    purge_seconds: float = 600.0
    #: A worker row not renewed for this long is a process that was killed: removed (and logged).
    forget_worker_seconds: float = 24 * 3600.0

    @property
    def recover_seconds(self) -> float:
        return min(self.lease_seconds / 4, 15.0)

    @property
    def expiry_check_seconds(self) -> float:
        return min(self.queue_expiry_seconds / 4, 60.0)


class Maintenance:
    """One loop; ``run()`` returns when the lock is lost to another bot (``lock_lost`` is then set)."""

    def __init__(
        self,
        queue: JobQueue,
        lock: BotLock,
        config: MaintenanceConfig,
        *,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self.lock = lock
        self.config = config
        self.on_change = on_change
        self.clock = clock
        self.lock_lost: AnotherBotRunning | None = None
        self._last: dict[str, float] = {}

    def _due(self, name: str, every: float) -> bool:
        now = self.clock()
        if now - self._last.get(name, float("-inf")) < every:
            return False
        self._last[name] = now
        return True

    async def tick(self) -> None:
        """Do whatever is due now. Database errors propagate (the loop logs them and goes on)."""
        c = self.config
        if self._due("lock", c.lock_renew_seconds):
            await self.lock.renew()
        changed = False
        if self._due("recover", c.recover_seconds):
            requeued, failed = await self.queue.recover_stale()
            changed |= bool(requeued or failed)
        if self._due("expire", c.expiry_check_seconds):
            changed |= bool(await self.queue.expire_queued(c.queue_expiry_seconds))
        if self._due("purge", c.purge_seconds):
            given_up = await self.queue.expire_undelivered(c.retention_seconds)
            purged = await self.queue.purge_results(c.retention_seconds)
            if purged:
                log.info("purged %d stored video(s) older than the retention period", purged)
            for worker_id in await self.queue.forget_workers(c.forget_worker_seconds):
                log.info("worker %s not seen for a day: removed from the worker list", worker_id)
            changed |= bool(given_up)
        if changed:
            self.on_change()

    async def run(self) -> None:
        step = min(self.config.lock_renew_seconds, self.config.recover_seconds, 5.0)
        failing = False
        while True:
            try:
                await self.tick()
                if failing:
                    log.info("maintenance: the database is reachable again")
                failing = False
            except AnotherBotRunning as exc:
                log.error("stopping: %s", exc)
                self.lock_lost = exc
                return
            except Exception as exc:  # most likely the database is down: try again at the next step
                if not failing:
                    log.warning("maintenance: %s (%s); retrying", type(exc).__name__, str(exc)[:200])
                failing = True
            await asyncio.sleep(step)
