"""Delivery: status/progress edits, posting finished videos, telling requesters about failures.

One background loop (``DeliveryService``) reads the job feed (``JobQueue.changed_since`` with a
cursor on the database clock). It wakes when this bot submits or cancels a job (``wake()``) and
every ``VIDEOBOT_POLL_SECONDS``, because workers are other processes. Every minute (and at
start-up) it also sweeps for anything still owed: jobs ``succeeded`` but not posted, failed or
cancelled jobs whose requester was not told yet, and jobs that wait for a delivery retry.

Slow Discord calls never hold up the loop: results are posted by a small bounded set of tasks
(one per job at most) and progress edits go through ``StatusEditor``, whose own workers edit a
message at most every 3 s, never once it is about an hour old, and at most a few times a second
overall. When Discord answers 429, discord.py waits in that task only.

Exactly once across restarts
----------------------------
A video must be posted once, even if the bot dies at any point. The steps for a ``succeeded`` job:

1. If a post of this job may already exist, look for it: the bot's own message, among the newest
   100 in the channel, with the attachment ``videobot-<job id>.mp4`` (the file name never contains
   user text; a status message mentions the job too, so content alone is not a reliable marker).
   "May exist" means: the job finished before this process started (an earlier process may have
   posted it and died before step 3), or an earlier attempt in this process ended without a
   definite answer (timeout, 5xx, connection reset).
2. Otherwise post it: as the interaction follow-up while the token is valid (no channel
   permission needed), else as a channel message with ``nonce="job-<id>"`` and
   ``enforce_nonce`` so Discord itself drops a duplicate sent within a few minutes.
3. ``mark_delivered(job, message id)`` — only ``succeeded`` jobs can move, so a second marker loses.

A crash between 2 and 3 leaves the job ``succeeded`` with a message in the channel; the next
process finds it in step 1 and only marks it. If marking fails (database down) the message id
is kept in memory and marking is retried without posting again. The window that remains: a
channel so busy that the post scrolled out of its newest 100 messages while the bot was down
(then, in a channel message, the nonce still covers the first minutes). If the bot cannot read
the channel history (no Read Message History), step 1 is skipped with a warning.

A 403/404/413 (missing permission, channel gone, file too large even after the worker fitted it)
cannot get better by retrying: the job becomes ``undeliverable`` with a log line and the status
message says so. 5xx and network errors (after discord.py's own retries) are retried at later
wake-ups with exponential backoff, at most ``MAX_ATTEMPTS`` times.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
from sqlalchemy import and_, or_, select

from bot.cogs.generate import _format
from videobot import quota
from videobot.jobs import JobQueue
from videobot.models import Job, JobStatus

if TYPE_CHECKING:
    from bot.app import VideoBot

log = logging.getLogger(__name__)

RERUN_EMOJI = "🔁"
#: Seconds the feed query reaches back behind the cursor (PostgreSQL commits can land out of order).
OVERLAP_SECONDS = 2.0
FEED_LIMIT = 200
SWEEP_SECONDS = 60.0
PURGE_SECONDS = 600.0
MAX_ATTEMPTS = 8
MAX_BACKOFF_SECONDS = 300.0
#: Use the interaction follow-up only while the token has at least this long to live.
TOKEN_MARGIN_SECONDS = 60.0
HISTORY_SCAN = 100
DELIVERY_CONCURRENCY = 3

_TRANSIENT = (discord.DiscordServerError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


class Undeliverable(Exception):
    """Posting cannot succeed by retrying (permissions, unknown channel, too large)."""


def message_age_seconds(message_id: int) -> float:
    return time.time() - discord.utils.snowflake_time(message_id).timestamp()


def _http_reason(exc: discord.HTTPException) -> str:
    return f"{exc.status}/{exc.code}"


# ---------------------------------------------------------------------------------------- status edits
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
                    _http_reason(exc),
                )
                self._close_job(job_id)
            else:
                log.warning("job %s: status edit failed (%s)", job_id, _http_reason(exc))
        except _TRANSIENT as exc:
            log.warning("job %s: status edit failed (%s)", job_id, type(exc).__name__)
        return False


# ---------------------------------------------------------------------------------------- delivery
class DeliveryService:
    """The bot's one background loop over the job feed; owns every task it starts."""

    def __init__(
        self, bot: VideoBot, queue: JobQueue, *, poll_seconds: float, retention_hours: float
    ) -> None:
        self.bot = bot
        self.queue = queue
        self.poll_seconds = poll_seconds
        self.retention_seconds = retention_hours * 3600.0
        self.editor = StatusEditor(self._edit_status)
        self._wake = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._sem = asyncio.Semaphore(DELIVERY_CONCURRENCY)
        self._started_db: float | None = None
        self._clock_offset = 0.0
        self._cursor = 0.0
        self._saturated = False
        self._seen: dict[int, float] = {}
        self._active: dict[int, Job] = {}
        self._retry: dict[int, tuple[int, float]] = {}
        self._posted: dict[int, int] = {}
        self._uncertain: set[int] = set()
        self._recheck: set[int] = set()
        self._last_sweep = 0.0
        self._last_purge = 0.0
        self.ticks = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.editor.start()
        self._main = asyncio.create_task(self._run(), name="delivery-loop")

    async def close(self) -> None:
        tasks = [t for t in [self._main, *self._tasks.values()] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.editor.close()

    def wake(self) -> None:
        """Look at the job feed now (this bot just submitted or cancelled something)."""
        self._wake.set()

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

    def _timeout(self) -> float:
        timeout = self.poll_seconds
        if self._retry:
            soonest = min(t for _, t in self._retry.values())
            timeout = min(timeout, max(0.05, soonest - time.monotonic()))
        return timeout

    async def _db_now(self) -> float:
        async with self.queue.db.sessionmaker() as s:
            now = await quota.now(s)
        self._clock_offset = now - time.time()
        return now

    def db_clock(self) -> float:
        return time.time() + self._clock_offset

    async def _tick(self) -> None:
        self.ticks += 1
        if self._started_db is None:
            now = await self._db_now()
            self._cursor = now - OVERLAP_SECONDS
            self._started_db = now
            await self._sweep()
            self._last_sweep = time.monotonic()
            log.info("delivery loop started")
        elif time.monotonic() - self._last_sweep > SWEEP_SECONDS:
            await self._db_now()
            await self._sweep()
            self._last_sweep = time.monotonic()
        if time.monotonic() - self._last_purge > PURGE_SECONDS:
            self._last_purge = time.monotonic()
            purged = await self.queue.purge_results(self.retention_seconds)
            if purged:
                log.info("purged %d stored video(s) older than the retention period", purged)
        since = self._cursor - (0.0 if self._saturated else OVERLAP_SECONDS)
        changed = await self.queue.changed_since(since, limit=FEED_LIMIT)
        self._saturated = len(changed) >= FEED_LIMIT
        if self._saturated:
            self._wake.set()  # more to read right away
        fresh = [j for j in changed if self._seen.get(j.id) != j.updated_at]
        for job in changed:
            self._cursor = max(self._cursor, job.updated_at)
        for job in fresh:
            self._seen[job.id] = job.updated_at
            self._handle(job)
        if len(self._seen) > 5000:
            floor = self._cursor - 10 * OVERLAP_SECONDS
            self._seen = {k: v for k, v in self._seen.items() if v >= floor}
        rechecked = await self._read_rechecks()
        self._schedule_due_retries()
        if fresh or rechecked:
            await self._refresh_status()

    async def _read_rechecks(self) -> bool:
        """Jobs whose status message was just recorded; one that already ended gets its final text."""
        if not self._recheck:
            return False
        ids, self._recheck = sorted(self._recheck), set()
        async with self.queue.db.sessionmaker() as s:
            jobs = list((await s.execute(select(Job).where(Job.id.in_(ids)))).scalars())
        for job in jobs:
            if job.status in (JobStatus.DELIVERED.value, JobStatus.UNDELIVERABLE.value) or (
                job.status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value)
                and job.notified_at is not None
            ):
                self._schedule(job.id, self._final_status)
            else:
                self._handle(job)
        return bool(jobs)

    async def _final_status(self, job_id: int) -> None:
        """The status message of a job that ended before its status message was recorded."""
        job = await self.queue.get(job_id)
        if job is None or not job.status_message_id:
            return
        if job.status == JobStatus.DELIVERED.value and job.result_message_id:
            channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
            text = _format.status_done(job, channel.get_partial_message(job.result_message_id).jump_url)
        elif job.status == JobStatus.UNDELIVERABLE.value:
            text = f"{_format.status_header(job)}\n⚠️ The video was made but could not be posted here: {job.error_message}"
        else:
            text = _format.status_failed(job)
        await self.editor.final(job.id, job.channel_id, job.status_message_id, text)

    async def _sweep(self) -> None:
        """Everything still owed, whatever the feed said (start-up, and a safety net every minute)."""
        async with self.queue.db.sessionmaker() as s:
            jobs = (
                await s.execute(
                    select(Job)
                    .where(
                        or_(
                            Job.status == JobStatus.SUCCEEDED.value,
                            and_(
                                Job.status.in_((JobStatus.FAILED.value, JobStatus.CANCELLED.value)),
                                Job.notified_at.is_(None),
                            ),
                            and_(
                                Job.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value)),
                                Job.status_message_id.is_not(None),
                            ),
                        )
                    )
                    .order_by(Job.id)
                    .limit(1000)
                )
            ).scalars()
            for job in jobs:
                self._seen[job.id] = job.updated_at
                self._handle(job)
        await self._refresh_status()

    def _handle(self, job: Job) -> None:
        status = job.status
        if status in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
            if job.status_message_id:
                self._active[job.id] = job
            return
        self._active.pop(job.id, None)
        if status == JobStatus.SUCCEEDED.value:
            self._schedule(job.id, self._deliver)
        elif status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value) and job.notified_at is None:
            self._schedule(job.id, self._notify)

    async def _refresh_status(self) -> None:
        """Queue positions for queued jobs (one query) and progress for running ones, as status edits."""
        if not self._active:
            return
        positions: dict[int, int] = {}
        if any(j.status == JobStatus.QUEUED.value for j in self._active.values()):
            async with self.queue.db.sessionmaker() as s:
                rows = (
                    await s.execute(
                        select(Job.id, Job.model)
                        .where(Job.status == JobStatus.QUEUED.value)
                        .order_by(Job.queued_at, Job.id)
                    )
                ).all()
            counters: dict[str, int] = {}
            for job_id, model in rows:
                counters[model] = counters.get(model, 0) + 1
                positions[job_id] = counters[model]
        for job in list(self._active.values()):
            assert job.status_message_id is not None
            text = _format.status_text(job, positions.get(job.id))
            self.editor.update(job.id, job.channel_id, job.status_message_id, text)

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
            await self._deliver(job_id)
        elif job.status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value) and job.notified_at is None:
            await self._notify(job_id)
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
                if attempts >= MAX_ATTEMPTS and job_id not in self._posted:
                    log.error(
                        "job %s: giving up after %d attempts (%s)", job_id, attempts, type(exc).__name__
                    )
                    self._retry.pop(job_id, None)
                    with contextlib.suppress(Exception):
                        if not await self.queue.mark_undeliverable(
                            job_id, "Discord kept failing; the video could not be posted."
                        ):
                            await self.queue.mark_notified(job_id)
                    return
                delay = min(2.0**attempts, MAX_BACKOFF_SECONDS)
                self._retry[job_id] = (attempts, time.monotonic() + delay)
                log.warning(
                    "job %s: delivery attempt %d failed (%s: %s); retrying in %.0f s",
                    job_id, attempts, type(exc).__name__, str(exc)[:200], delay,
                )  # fmt: skip
                self._wake.set()

    # ------------------------------------------------------------------ results
    def _maybe_posted(self, job: Job) -> bool:
        assert self._started_db is not None
        return job.id in self._uncertain or (job.finished_at or 0.0) <= self._started_db + 1.0

    async def _deliver(self, job_id: int) -> None:
        job = await self.queue.get(job_id)
        if job is None or job.status != JobStatus.SUCCEEDED.value:
            return
        message_id = self._posted.get(job_id)
        if message_id is None and self._maybe_posted(job):
            message_id = await self._find_posted(job)
            if message_id is not None:
                log.info("job %s: already posted as message %s before; not posting again", job_id, message_id)
        if message_id is None:
            result = await self.queue.get_result(job_id)
            if result is None:
                await self._undeliverable(job, "The finished video is missing from the database.")
                return
            try:
                message = await self._post(job, result)
            except Undeliverable as exc:
                await self._undeliverable(job, str(exc))
                return
            message_id = message.id
            self._posted[job_id] = message_id
            self._uncertain.discard(job_id)
            log.info("job %s: posted as message %s (%d bytes)", job_id, message_id, result.size_bytes)
        await self.queue.mark_delivered(job_id, message_id)
        self._posted.pop(job_id, None)
        await self._after_delivery(job, message_id)

    async def _after_delivery(self, job: Job, message_id: int) -> None:
        """Best effort: the 🔁 reaction and the status message's final text."""
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        message = channel.get_partial_message(message_id)
        try:
            await message.add_reaction(RERUN_EMOJI)
        except discord.HTTPException as exc:
            log.info("job %s: could not add %s (%s)", job.id, RERUN_EMOJI, _http_reason(exc))
        except _TRANSIENT:
            log.info("job %s: could not add %s", job.id, RERUN_EMOJI)
        if job.status_message_id:
            await self.editor.final(
                job.id, job.channel_id, job.status_message_id, _format.status_done(job, message.jump_url)
            )

    async def _undeliverable(self, job: Job, reason: str) -> None:
        log.warning("job %s: undeliverable: %s", job.id, reason)
        await self.queue.mark_undeliverable(job.id, reason)
        if job.status_message_id:
            text = f"{_format.status_header(job)}\n⚠️ The video was made but could not be posted here: {reason} Your credit was refunded."
            await self.editor.final(job.id, job.channel_id, job.status_message_id, text)

    async def _find_posted(self, job: Job) -> int | None:
        """The bot's own result message for this job among the channel's newest messages, if any."""
        me = self.bot.user
        if me is None:
            return None
        try:
            messages = await self.bot.http.logs_from(job.channel_id, HISTORY_SCAN)
        except (discord.Forbidden, discord.NotFound) as exc:
            log.warning(
                "job %s: cannot read the channel history to check for an earlier post (%s)",
                job.id,
                _http_reason(exc),
            )
            return None
        filename = _format.result_filename(job.id)
        footer = "-# " + _format.job_marker(job.id) + " ·"
        for m in messages:
            if int(m["author"]["id"]) != me.id:
                continue
            if any(a.get("filename") == filename for a in m.get("attachments") or []) or footer in (
                m.get("content") or ""
            ):
                return int(m["id"])
        return None

    def _token_valid(self, job: Job) -> bool:
        return bool(
            job.interaction_token
            and job.application_id
            and job.interaction_expires_at
            and job.interaction_expires_at - self.db_clock() > TOKEN_MARGIN_SECONDS
        )

    async def _post(self, job: Job, result: Any) -> discord.Message:
        content = _format.result_content(job, result)
        mentions = discord.AllowedMentions(
            users=[discord.Object(job.user_id)], everyone=False, roles=False, replied_user=False
        )

        def file() -> discord.File:
            return discord.File(io.BytesIO(result.video), filename=_format.result_filename(job.id))

        try:
            if self._token_valid(job) and job.kind != "rerun":
                assert job.application_id is not None and job.interaction_token is not None
                webhook = discord.Webhook.partial(job.application_id, job.interaction_token, client=self.bot)
                try:
                    await self._answer_if_loading(job, webhook)
                    return await webhook.send(content, file=file(), allowed_mentions=mentions, wait=True)
                except discord.HTTPException as exc:
                    if exc.status not in (401, 404) and exc.code not in (50027, 10015):
                        raise
                    log.info(
                        "job %s: interaction token no longer valid (%s); posting in the channel",
                        job.id,
                        _http_reason(exc),
                    )
            channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
            reference = None
            if job.reply_to_message_id:
                reference = discord.MessageReference(
                    message_id=job.reply_to_message_id, channel_id=job.channel_id, fail_if_not_exists=False
                )
            return await channel.send(
                content,
                file=file(),
                allowed_mentions=mentions,
                nonce=_format.result_nonce(job.id),
                reference=reference,  # type: ignore[arg-type]
            )
        except _TRANSIENT:
            self._uncertain.add(job.id)  # the message may exist: look before posting again
            raise
        except discord.HTTPException as exc:
            if exc.status == 403:
                raise Undeliverable("I am missing the permission to post videos in this channel.") from None
            if exc.status == 404:
                raise Undeliverable("The channel no longer exists.") from None
            if exc.status == 413 or exc.code == 40005:
                raise Undeliverable("The file is larger than this server's upload limit.") from None
            if 400 <= exc.status < 500 and exc.status != 429:
                log.error(
                    "job %s: Discord refused the result message (%s): %s",
                    job.id,
                    _http_reason(exc),
                    exc.text[:300],
                )
                raise Undeliverable("Discord refused the message.") from None
            self._uncertain.add(job.id)
            raise

    async def _answer_if_loading(self, job: Job, webhook: discord.Webhook) -> None:
        """Answer the /video's deferred response if it is still "thinking…" (its answer is late: the bot
        died, or Discord rate-limited it). Discord fills a loading deferred response with the first
        follow-up, which would put the video in the requester's ephemeral message, hidden from the channel.
        """
        try:
            original = await webhook.fetch_message("@original")  # type: ignore[arg-type]
        except discord.DiscordServerError:
            raise
        except discord.HTTPException:
            return  # expired token or dismissed answer: the follow-up gets the same answer, handled below
        if original.flags.loading:
            log.info("job %s: the /video answer is still pending; answering it before the follow-up", job.id)
            await webhook.edit_message(  # type: ignore[arg-type]
                "@original", content=f"Your video ({_format.job_marker(job.id)}) is ready: posted below."
            )

    # ------------------------------------------------------------------ failures and cancellations
    async def _notify(self, job_id: int) -> None:
        job = await self.queue.get(job_id)
        if job is None or job.notified_at is not None:
            return
        if job.status not in (JobStatus.FAILED.value, JobStatus.CANCELLED.value):
            return
        told = False
        if job.status_message_id:
            told = await self.editor.final(
                job.id, job.channel_id, job.status_message_id, _format.status_failed(job)
            )
        if job.status == JobStatus.FAILED.value or not told:
            channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
            reference = None
            if job.status_message_id:
                reference = discord.MessageReference(
                    message_id=job.status_message_id, channel_id=job.channel_id, fail_if_not_exists=False
                )
            try:
                await channel.send(
                    _format.failure_notice(job),
                    reference=reference,  # type: ignore[arg-type]
                    allowed_mentions=discord.AllowedMentions(
                        users=[discord.Object(job.user_id)], everyone=False, roles=False, replied_user=False
                    ),
                )
            except discord.HTTPException as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise
                log.warning("job %s: could not tell the requester (%s)", job.id, _http_reason(exc))
        await self.queue.mark_notified(job.id)
        log.info("job %s: requester told it %s", job.id, job.status)

    # ------------------------------------------------------------------ helpers for the cogs
    async def _edit_status(self, channel_id: int, message_id: int, text: str) -> None:
        channel = self.bot.get_partial_messageable(channel_id)
        await channel.get_partial_message(message_id).edit(
            content=text, allowed_mentions=discord.AllowedMentions.none()
        )

    async def job_for_result_message(self, message_id: int) -> Job | None:
        """The job whose result was posted as ``message_id`` (reactions on results)."""
        async with self.queue.db.sessionmaker() as s:
            return (
                await s.execute(select(Job).where(Job.result_message_id == message_id).limit(1))
            ).scalar_one_or_none()
