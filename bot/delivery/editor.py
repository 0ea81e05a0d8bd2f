"""Throttled, coalescing edits of public status messages (final text, progress, queue position).

Each channel has one sender task (owned by the editor), because Discord's edit budget is per channel
(about 5 per 5 s, see ``budget``). A job has at most one pending edit (the newest text wins) and is
edited at most once per ``min_interval``. When the channel's budget gives a slot, the sender picks the
most urgent edit that is due:

1. final texts (``final()``: done, failed, cancelled, undeliverable), awaited by their caller;
2. progress of running jobs (``PROGRESS``);
3. queue positions of queued jobs (``BACKGROUND``), the nearest place first, and only while the
   budget's reserve is left free for the two above.

A progress edit may carry the job's latest preview picture (``Picture``); it replaces the one before
on the message, travels in the same ``PROGRESS`` slot as the text it goes with (one edit, never an
extra one), and a newer text that comes while it waits keeps it. A final text removes the picture and
the message's buttons.

So the edits of 150 queued jobs' positions lag (they are dropped and merged into the newest text
while they wait) but never hold up the running job's progress or a result's final text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import discord

from bot.delivery.budget import BACKGROUND, EDIT, RESULT, ChannelBudget
from bot.discord_http import TRANSIENT, http_reason

log = logging.getLogger(__name__)


def message_age_seconds(message_id: int) -> float:
    return time.time() - discord.utils.snowflake_time(message_id).timestamp()


@dataclass(frozen=True)
class Picture:
    """A preview picture to attach to a status message (the file name never contains user text)."""

    filename: str
    data: bytes
    step: int


@dataclass
class _Edit:
    channel_id: int
    message_id: int
    text: str
    priority: int = BACKGROUND
    rank: float = 0.0
    since: float = field(default_factory=time.monotonic)
    done: asyncio.Future[bool] | None = None  # a final text's caller waits on it
    picture: Picture | None = None


#: ``edit(channel_id, message_id, text, picture=..., final=...)``: ``picture`` replaces the message's
#: attachments; ``final`` removes the attachments and the buttons.
EditFn = Callable[..., Awaitable[None]]


class StatusEditor:
    """Coalescing, prioritised status-message edits, one sender task per channel (owned here)."""

    #: Discord refuses edits of messages older than 1 h (30046); stop a little before.
    MAX_AGE_SECONDS = 3600 - 120
    #: The longest ``final()`` waits for its edit (a delivery slot waits on it): final texts go first in
    #: their channel, so only a channel with a hundred finals at once (5 edits per 5 s) comes near it.
    FINAL_TIMEOUT = 180.0

    def __init__(
        self,
        edit: EditFn,
        *,
        budget: ChannelBudget | None = None,
        min_interval: float = 3.0,
        global_gap: float = 0.1,
        final_timeout: float = FINAL_TIMEOUT,
    ) -> None:
        self._edit = edit
        self.final_timeout = final_timeout
        self.budget = budget or ChannelBudget()
        self.min_interval = min_interval
        self.global_gap = global_gap
        self._pending: dict[int, _Edit] = {}
        self._finals: dict[int, _Edit] = {}
        self._channel_jobs: dict[int, set[int]] = {}
        self._shown: dict[int, str] = {}
        self._shown_step: dict[int, int] = {}  # the step of the preview a status message shows
        self._last: dict[int, float] = {}
        self._closed: OrderedDict[int, None] = OrderedDict()  # final text shown, or the message is gone
        self._wakeups: dict[int, asyncio.Event] = {}
        self._senders: dict[int, asyncio.Task[None]] = {}
        self._next_slot = 0.0
        self._running = False

    def start(self) -> None:
        self._running = True

    async def close(self) -> None:
        self._running = False
        tasks = list(self._senders.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._senders.clear()
        for edit in self._finals.values():
            if edit.done is not None and not edit.done.done():
                edit.done.set_result(False)
        self._finals.clear()

    def _close_job(self, job_id: int) -> None:
        self._closed[job_id] = None
        while len(self._closed) > 10_000:
            self._closed.popitem(last=False)
        self._pending.pop(job_id, None)
        self._shown.pop(job_id, None)
        self._shown_step.pop(job_id, None)
        self._last.pop(job_id, None)

    def seed(self, job_id: int, text: str) -> None:
        """The text a status message was posted with (so an identical first edit is skipped)."""
        self._shown[job_id] = text
        self._last[job_id] = time.monotonic()

    def shows(self, job_id: int) -> str | None:
        """The text this process last showed in the job's status message, if it knows it."""
        return self._shown.get(job_id)

    def pending(self, channel_id: int | None = None) -> int:
        """Edits waiting (in one channel if given), final texts included."""
        edits = [*self._pending.values(), *self._finals.values()]
        return sum(1 for e in edits if channel_id is None or e.channel_id == channel_id)

    def update(
        self,
        job_id: int,
        channel_id: int,
        message_id: int,
        text: str,
        *,
        priority: int = BACKGROUND,
        rank: float = 0.0,
        picture: Picture | None = None,
    ) -> None:
        """Show ``text`` (and a new preview ``picture``) soon: at most one edit per ``min_interval``;
        only the newest text is sent, with the newest picture not shown yet."""
        if job_id in self._closed:
            return
        if picture is not None and self._shown_step.get(job_id) == picture.step:
            picture = None
        old = self._pending.get(job_id)
        if picture is None and old is not None:
            picture = old.picture
        if self._shown.get(job_id) == text and picture is None:
            self._pending.pop(job_id, None)
            return
        if message_age_seconds(message_id) > self.MAX_AGE_SECONDS:
            return
        self._pending[job_id] = _Edit(
            channel_id,
            message_id,
            text,
            priority,
            rank,
            since=old.since if old else time.monotonic(),
            picture=picture,
        )
        self._channel_jobs.setdefault(channel_id, set()).add(job_id)
        self._kick(channel_id)

    async def final(self, job_id: int, channel_id: int, message_id: int, text: str) -> bool:
        """Replace the status with its final text before any other edit in the channel (no more
        progress edits after it). True if shown."""
        already = self._shown.get(job_id) == text
        self._close_job(job_id)
        if already:
            return True
        if message_age_seconds(message_id) > self.MAX_AGE_SECONDS:
            return False
        earlier = self._finals.get(job_id)
        if earlier is not None and earlier.done is not None and not earlier.done.done():
            earlier.done.set_result(False)  # superseded by this text
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._finals[job_id] = _Edit(channel_id, message_id, text, RESULT, 0.0, done=done)
        self._channel_jobs.setdefault(channel_id, set()).add(job_id)
        self._kick(channel_id)
        try:
            return await asyncio.wait_for(asyncio.shield(done), self.final_timeout)
        except TimeoutError:
            log.warning("job %s: the final status edit did not go out in %.0f s", job_id, self.final_timeout)
            if self._finals.get(job_id) is not None and self._finals[job_id].done is done:
                del self._finals[job_id]
            if not done.done():
                done.set_result(False)
            return False

    # ------------------------------------------------------------------ senders
    def _kick(self, channel_id: int) -> None:
        event = self._wakeups.get(channel_id)
        if event is None:
            event = self._wakeups[channel_id] = asyncio.Event()
        event.set()
        task = self._senders.get(channel_id)
        if task is None or task.done():
            task = asyncio.create_task(self._sender(channel_id), name=f"status-editor-{channel_id}")
            task.add_done_callback(self._sender_ended)
            self._senders[channel_id] = task

    def _sender_ended(self, task: asyncio.Task[None]) -> None:
        """A sender that died of an unexpected error is replaced at once if its channel has edits waiting
        (a final text's caller and its delivery slot would otherwise wait for the channel's next edit)."""
        if task.cancelled() or task.exception() is None:
            return
        channel_id = next((c for c, t in self._senders.items() if t is task), None)
        log.error("status editor of channel %s stopped", channel_id, exc_info=task.exception())
        if channel_id is None:
            return
        del self._senders[channel_id]
        if self._running and self._channel_jobs.get(channel_id):
            self._kick(channel_id)

    def _pick(self, channel_id: int, now: float) -> tuple[int | None, float]:
        """The most urgent due edit of a channel (job id), or None and the seconds until one is due."""
        jobs = self._channel_jobs.get(channel_id, set())
        best: tuple[tuple[int, float, float], int] | None = None
        soonest = float("inf")
        for job_id in list(jobs):
            edit = self._finals.get(job_id)
            if edit is None:
                edit = self._pending.get(job_id)
                if edit is None:
                    jobs.discard(job_id)
                    continue
                due = self._last.get(job_id, float("-inf")) + self.min_interval
                if due > now:
                    soonest = min(soonest, due - now)
                    continue
            key = (edit.priority, edit.rank, edit.since)
            if best is None or key < best[0]:
                best = (key, job_id)
        return (best[1], 0.0) if best else (None, soonest)

    async def _sender(self, channel_id: int) -> None:
        event = self._wakeups[channel_id]
        idle_since = time.monotonic()
        while True:
            event.clear()
            now = time.monotonic()
            job_id, wait = self._pick(channel_id, now)
            if job_id is not None:
                edit = self._finals.get(job_id) or self._pending[job_id]
                wait = self.budget.try_take(EDIT, channel_id, edit.priority)
                if wait <= 0:
                    await self._send(job_id)
                    idle_since = time.monotonic()
                    continue
            elif wait == float("inf"):
                if now - idle_since > 60:
                    self._senders.pop(channel_id, None)
                    return  # nothing to do in this channel for a minute: the next update starts a new one
                wait = 60.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max(0.01, wait))

    async def _send(self, job_id: int) -> None:
        final = self._finals.pop(job_id, None)
        edit = final or self._pending.pop(job_id)
        if final is None and job_id in self._closed:
            return
        ok = False
        try:
            await self._throttle()
            self._last[job_id] = time.monotonic()
            ok = await self._safe_edit(job_id, edit)
        finally:  # an unexpected error still answers the final text's caller (the sender then restarts)
            if final is not None:
                assert final.done is not None
                if not final.done.done():
                    final.done.set_result(ok)
        if final is not None:
            return
        if ok and job_id not in self._closed:
            self._shown[job_id] = edit.text
            if edit.picture is not None:
                self._shown_step[job_id] = edit.picture.step
        if job_id not in self._closed:
            self._last[job_id] = time.monotonic()

    async def _throttle(self) -> None:
        """At most one edit per ``global_gap`` over all channels (well under Discord's 50/s)."""
        now = time.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self.global_gap
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _safe_edit(self, job_id: int, edit: _Edit) -> bool:
        try:
            await self._edit(
                edit.channel_id, edit.message_id, edit.text, picture=edit.picture, final=edit.done is not None
            )
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
