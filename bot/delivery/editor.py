"""Throttled, coalescing edits of public status messages (queue position, progress, final text)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import discord

from bot.delivery._http import TRANSIENT, http_reason

log = logging.getLogger(__name__)


def message_age_seconds(message_id: int) -> float:
    return time.time() - discord.utils.snowflake_time(message_id).timestamp()


@dataclass
class _Edit:
    channel_id: int
    message_id: int
    text: str


class StatusEditor:
    """Coalescing, throttled status-message edits, done by a few worker tasks it owns."""

    #: Discord refuses edits of messages older than 1 h (30046); stop a little before.
    MAX_AGE_SECONDS = 3600 - 120

    def __init__(
        self,
        edit: Callable[[int, int, str], Awaitable[None]],
        *,
        workers: int = 4,
        min_interval: float = 3.0,
        global_gap: float = 0.2,
    ) -> None:
        self._edit = edit
        self._n_workers = workers
        self.min_interval = min_interval
        self.global_gap = global_gap
        self._pending: dict[int, _Edit] = {}
        self._shown: dict[int, str] = {}
        self._last: dict[int, float] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._closed: OrderedDict[int, None] = OrderedDict()  # final text shown, or the message is gone
        self._ready: asyncio.Queue[int] = asyncio.Queue()
        self._next_slot = 0.0
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._worker(), name=f"status-editor-{i}") for i in range(self._n_workers)
        ]

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []

    def _close_job(self, job_id: int) -> None:
        self._closed[job_id] = None
        while len(self._closed) > 10_000:
            self._closed.popitem(last=False)
        self._pending.pop(job_id, None)
        self._shown.pop(job_id, None)
        self._last.pop(job_id, None)
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    def seed(self, job_id: int, text: str) -> None:
        """The text a status message was posted with (so an identical first edit is skipped)."""
        self._shown[job_id] = text
        self._last[job_id] = time.monotonic()

    def update(self, job_id: int, channel_id: int, message_id: int, text: str) -> None:
        """Show ``text`` soon (at most one edit per ``min_interval``; only the newest text is sent)."""
        if job_id in self._closed or self._shown.get(job_id) == text:
            self._pending.pop(job_id, None) if self._shown.get(job_id) == text else None
            return
        if message_age_seconds(message_id) > self.MAX_AGE_SECONDS:
            return
        self._pending[job_id] = _Edit(channel_id, message_id, text)
        if job_id in self._timers:
            return  # already scheduled; it will send the newest text
        delay = max(0.0, self._last.get(job_id, float("-inf")) + self.min_interval - time.monotonic())
        loop = asyncio.get_running_loop()
        self._timers[job_id] = loop.call_later(delay, self._ready.put_nowait, job_id)

    async def final(self, job_id: int, channel_id: int, message_id: int, text: str) -> bool:
        """Replace the status with its final text now (no more progress edits after it). True if shown."""
        self._close_job(job_id)
        if message_age_seconds(message_id) > self.MAX_AGE_SECONDS:
            return False
        async with self._lock(job_id):
            await self._throttle()
            ok = await self._safe_edit(job_id, _Edit(channel_id, message_id, text))
        self._locks.pop(job_id, None)
        return ok

    def _lock(self, job_id: int) -> asyncio.Lock:
        return self._locks.setdefault(job_id, asyncio.Lock())

    async def _throttle(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self.global_gap
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _worker(self) -> None:
        while True:
            job_id = await self._ready.get()
            self._timers.pop(job_id, None)
            pending = self._pending.pop(job_id, None)
            if pending is None or job_id in self._closed:
                continue
            async with self._lock(job_id):
                if job_id in self._closed:
                    continue
                await self._throttle()
                self._last[job_id] = time.monotonic()
                if await self._safe_edit(job_id, pending):
                    self._shown[job_id] = pending.text
                self._last[job_id] = time.monotonic()

    async def _safe_edit(self, job_id: int, edit: _Edit) -> bool:
        try:
            await self._edit(edit.channel_id, edit.message_id, edit.text)
            return True
        except discord.HTTPException as exc:
            if exc.status in (403, 404) or exc.code == 30046:
                log.info(
                    "job %s: status message %s can no longer be edited (%s)",
                    job_id,
                    edit.message_id,
                    http_reason(exc),
                )
                self._close_job(job_id)
            else:
                log.warning("job %s: status edit failed (%s)", job_id, http_reason(exc))
        except TRANSIENT as exc:
            log.warning("job %s: status edit failed (%s)", job_id, type(exc).__name__)
        return False
