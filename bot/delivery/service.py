"""The delivery loop: reads the job feed, schedules posts and notices, keeps status messages current,
retries what failed with backoff. It owns every task it starts (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import discord

from bot.delivery.budget import BACKGROUND, PROGRESS, ChannelBudget
from bot.delivery.editor import Picture, StatusEditor
from bot.delivery.feed import JobFeed
from bot.delivery.notify import Notifier
from bot.delivery.posting import ResultPoster
from bot.delivery.review import Reviewer
from bot.delivery.status import StatusPoster
from bot.ports import DeliveryHost
from bot.ui import texts
from videobot.i18n import N_
from videobot.jobs import JobQueue, ModelSpeed
from videobot.models import Job, JobStatus

log = logging.getLogger(__name__)

#: The least time between two ticks when woken: wakes inside it are read together (a burst wakes it per job).
MIN_TICK_SECONDS = 0.25
SWEEP_SECONDS = 60.0
MAX_ATTEMPTS = 8
MAX_BACKOFF_SECONDS = 300.0
#: A job that ended without a status message (the bot restarted before posting it) still gets one,
#: with its final text, if it was submitted this recently (the interaction token's lifetime).
STATUS_POST_HORIZON_SECONDS = 900.0
DELIVERY_CONCURRENCY = 3
#: Stored in English, shown in the server's language (``videobot.jobs.job_error``).
DISCORD_KEPT_FAILING = N_("Discord kept failing; the video could not be posted.")
#: How often the models' measured speeds (for the time left and the queue's start estimates) are re-read.
SPEED_REFRESH_SECONDS = 30.0


class DeliveryService:
    """The bot's one background loop over the job feed; owns every task it starts."""

    def __init__(self, bot: DeliveryHost, queue: JobQueue, *, poll_seconds: float) -> None:
        self.bot = bot
        self.queue = queue
        self.poll_seconds = poll_seconds
        self.budget = ChannelBudget()
        self.editor = StatusEditor(self._edit_status, budget=self.budget)
        self.feed = JobFeed(queue)
        self.notifier = Notifier(bot, queue, self.editor, db_clock=self.feed.db_clock)
        self.status_poster = StatusPoster(bot, queue, self.notifier, self.budget, on_posted=self.track_status)
        self.poster = ResultPoster(
            bot,
            queue,
            self.editor,
            self.notifier,
            db_clock=self.feed.db_clock,
            started_db=lambda: self.feed.started_db,
            on_held=self._held,
        )
        self.reviewer = Reviewer(bot, queue, self.editor, self.notifier, db_clock=self.feed.db_clock)
        self._wake = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._sem = asyncio.Semaphore(DELIVERY_CONCURRENCY)
        self._active: dict[int, Job] = {}
        self._retry: dict[int, tuple[int, float]] = {}
        self._recheck: set[int] = set()
        self._last_sweep = 0.0
        self._speeds: dict[str, ModelSpeed] = {}
        self._speeds_read = float("-inf")
        self._preview_steps: dict[int, int] = {}  # job id -> the step of the preview last read

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.editor.start()
        self._main = asyncio.create_task(self._run(), name="delivery-loop")
        self.feed.listen(self.wake)  # PostgreSQL: workers' NOTIFY wakes the loop at their commit

    async def close(self) -> None:
        tasks = [t for t in [self._main, *self._tasks.values()] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.feed.close()
        await self.status_poster.close()
        await self.editor.close()

    def wake(self) -> None:
        """Look at the job feed now (this bot submitted or cancelled something, or a NOTIFY came)."""
        self._wake.set()

    def post_status(self, job_id: int, channel_id: int) -> None:
        """Post the job's public status message in the background (after the member was answered);
        see ``bot.delivery.status``. Safe to call more than once."""
        self.status_poster.owe(job_id, channel_id)

    def track_status(self, job_id: int, shown: str | None = None) -> None:
        """A status message was recorded for a job (which the feed does not show as a change): re-read it."""
        if shown is not None:
            self.editor.seed(job_id, shown)
        self._recheck.add(job_id)
        self.wake()

    # ------------------------------------------------------------------ loop
    async def _run(self) -> None:
        backoff = 0.0
        while True:
            started = time.monotonic()
            try:
                self._wake.clear()
                await self._tick()
                backoff = 0.0
                timeout = self._timeout()
            except Exception as exc:  # the database is down, most likely: try again later
                backoff = min(max(backoff * 2, 1.0), 30.0)
                log.warning(
                    "delivery loop: %s (%s); retrying in %.0f s", type(exc).__name__, str(exc)[:200], backoff
                )
                log.debug("delivery loop error", exc_info=True)
                timeout = backoff
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            if not self.feed.saturated:
                # Wakes closer together than this (a burst of submits, a NOTIFY per job) are read in
                # one tick: each tick reads the feed and recomputes queue positions.
                await asyncio.sleep(max(0.0, started + MIN_TICK_SECONDS - time.monotonic()))

    def _timeout(self) -> float:
        timeout = self.poll_seconds
        if self._recheck:
            timeout = min(timeout, 0.2)
        if self._retry:
            soonest = min(t for _, t in self._retry.values())
            timeout = min(timeout, max(0.05, soonest - time.monotonic()))
        return timeout

    def db_clock(self) -> float:
        return self.feed.db_clock()

    async def _tick(self) -> None:
        if self.feed.started_db is None:
            await self.feed.sync_clock()
            await self._sweep()
            self._last_sweep = time.monotonic()
            log.info("delivery loop started")
        elif time.monotonic() - self._last_sweep > SWEEP_SECONDS:
            await self.feed.sync_clock()
            await self._sweep()
            self._last_sweep = time.monotonic()
        fresh = await self.feed.read()
        if self.feed.saturated:
            self._wake.set()  # more to read right away
        for job in fresh:
            self._handle(job)
        rechecked = await self._read_rechecks()
        self._schedule_due_retries()
        if fresh or rechecked:
            await self._refresh_status()

    async def _read_rechecks(self) -> bool:
        """Jobs whose status message was just recorded; one that already ended gets its final text."""
        if not self._recheck:
            return False
        # A job whose delivery task still runs is looked at again on a later tick (that task may
        # have read the job before its status message was recorded).
        busy = {job_id for job_id in self._recheck if job_id in self._tasks}
        ids, self._recheck = sorted(self._recheck - busy), busy
        jobs = await self.queue.get_many(ids)
        for job in jobs:
            if job.status in (JobStatus.DELIVERED.value, JobStatus.UNDELIVERABLE.value) or (
                job.status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value, JobStatus.HELD.value)
                and job.notified_at is not None
            ):
                self._schedule(job.id, self.notifier.final_status)
            else:
                self._handle(job)
        return bool(jobs)

    async def _sweep(self) -> None:
        """Everything still owed, whatever the feed said (start-up, and a safety net every minute)."""
        for job in await self.feed.sweep():
            self._handle(job)
        recent = self.feed.db_clock() - STATUS_POST_HORIZON_SECONDS
        for job in await self.queue.without_status_message(created_after=recent):
            self.status_poster.owe(job.id, job.channel_id)
        await self._refresh_status()

    def _handle(self, job: Job) -> None:
        status = job.status
        if status in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
            if job.status_message_id:
                self._active[job.id] = job
            return
        self._active.pop(job.id, None)
        self._preview_steps.pop(job.id, None)
        if status == JobStatus.SUCCEEDED.value:
            self._schedule(job.id, self.poster.deliver)
        elif status == JobStatus.HELD.value and job.notified_at is None:
            self._schedule(job.id, self.reviewer.ask)
        elif status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value) and job.notified_at is None:
            self._schedule(job.id, self.notifier.notify)

    async def _refresh_status(self) -> None:
        """Queue positions (with estimated starts) for queued jobs and progress (with the time left and
        the latest preview) for running ones, as status edits: progress before positions, and the
        nearest place in the queue first (see ``editor``)."""
        if not self._active:
            return
        if time.monotonic() - self._speeds_read > SPEED_REFRESH_SECONDS:
            self._speeds = await self.queue.speeds()
            self._speeds_read = time.monotonic()
        positions: dict[int, int] = {}
        starts: dict[int, float] = {}
        if any(j.status == JobStatus.QUEUED.value for j in self._active.values()):
            positions = await self.queue.positions()
            if self._speeds:
                starts = await self.queue.start_estimates(positions)
        running = [j.id for j in self._active.values() if j.status == JobStatus.RUNNING.value]
        pictures = await self._new_previews(running)
        for job in list(self._active.values()):
            assert job.status_message_id is not None
            position = positions.get(job.id)
            speed = self._speeds.get(job.model)
            # Public: the server's language (cached for a minute, so one read per server at most).
            text = texts.status_text(
                await self.notifier.locale(job),
                job,
                position,
                per_step=speed.seconds_per_step if speed else None,
                starts_in=starts.get(job.id),
            )
            if job.status == JobStatus.RUNNING.value:
                self.editor.update(
                    job.id,
                    job.channel_id,
                    job.status_message_id,
                    text,
                    priority=PROGRESS,
                    picture=pictures.get(job.id),
                )
            else:
                self.editor.update(
                    job.id,
                    job.channel_id,
                    job.status_message_id,
                    text,
                    priority=BACKGROUND,
                    rank=position or 0,
                )

    async def _new_previews(self, job_ids: list[int]) -> dict[int, Picture]:
        """The previews of these running jobs that are newer than the ones read before (one small
        query for their steps, then one read per new preview)."""
        if not job_ids:
            return {}
        pictures: dict[int, Picture] = {}
        for job_id, step in (await self.queue.preview_steps(job_ids)).items():
            if self._preview_steps.get(job_id) == step:
                continue
            row = await self.queue.get_preview(job_id)
            if row is None:  # the job ended meanwhile
                continue
            self._preview_steps[job_id] = row.step
            name = texts.preview_filename(job_id, row.content_type)
            pictures[job_id] = Picture(filename=name, data=bytes(row.data), step=row.step)
        return pictures

    # ------------------------------------------------------------------ per-job tasks
    def _schedule(self, job_id: int, fn: Callable[[int], Coroutine[Any, Any, None]]) -> None:
        if job_id in self._tasks:
            return
        retry = self._retry.get(job_id)
        if retry is not None and retry[1] > time.monotonic():
            return
        task = asyncio.create_task(self._guarded(job_id, fn), name=f"deliver-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t, jid=job_id: self._tasks.pop(jid, None))

    def _schedule_due_retries(self) -> None:
        now = time.monotonic()
        for job_id, (_, not_before) in list(self._retry.items()):
            if not_before <= now and job_id not in self._tasks:
                self._schedule(job_id, self._retry_job)

    async def _retry_job(self, job_id: int) -> None:
        job = await self.queue.get(job_id)
        if job is None:
            self._retry.pop(job_id, None)
            return
        if job.status == JobStatus.SUCCEEDED.value:
            await self.poster.deliver(job_id)
        elif job.status == JobStatus.HELD.value and job.notified_at is None:
            await self.reviewer.ask(job_id)
        elif job.status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value) and job.notified_at is None:
            await self.notifier.notify(job_id)
        else:
            self._retry.pop(job_id, None)

    async def _guarded(self, job_id: int, fn: Callable[[int], Coroutine[Any, Any, None]]) -> None:
        async with self._sem:
            try:
                await fn(job_id)
                self._retry.pop(job_id, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempts = self._retry.get(job_id, (0, 0.0))[0] + 1
                if attempts >= MAX_ATTEMPTS and job_id not in self.poster.posted:
                    log.error(
                        "job %s: giving up after %d attempts (%s)", job_id, attempts, type(exc).__name__
                    )
                    self._retry.pop(job_id, None)
                    with contextlib.suppress(Exception):
                        if not await self.queue.mark_undeliverable(job_id, DISCORD_KEPT_FAILING):
                            await self.queue.mark_notified(job_id)
                    return
                delay = min(2.0**attempts, MAX_BACKOFF_SECONDS)
                self._retry[job_id] = (attempts, time.monotonic() + delay)
                log.warning(
                    "job %s: delivery attempt %d failed (%s: %s); retrying in %.0f s",
                    job_id, attempts, type(exc).__name__, str(exc)[:200], delay,
                )  # fmt: skip
                self._wake.set()

    # ------------------------------------------------------------------ helpers
    async def _held(self, job_id: int) -> None:
        """The poster held a flagged result: ask for its review in the same delivery task."""
        await self.reviewer.ask(job_id)

    async def _edit_status(
        self,
        channel_id: int,
        message_id: int,
        text: str,
        *,
        picture: Picture | None = None,
        final: bool = False,
    ) -> None:
        """Edit a status message; a ``picture`` replaces its attachments, a ``final`` text removes them and
        the Cancel button."""
        extra: dict[str, Any] = {}
        if picture is not None:
            extra["attachments"] = [discord.File(io.BytesIO(picture.data), filename=picture.filename)]
        if final:
            extra.update(attachments=[], view=None)
        channel = self.bot.get_partial_messageable(channel_id)
        await channel.get_partial_message(message_id).edit(
            content=text, allowed_mentions=discord.AllowedMentions.none(), **extra
        )
