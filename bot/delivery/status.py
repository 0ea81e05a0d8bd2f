"""Posting each job's public status message, after the member was answered, never lost.

``/video`` answers the member first (the ephemeral "Queued as job #N") and then hands the job to
``StatusPoster.owe()``; the reaction rerun does the same. The poster posts the status messages of one
channel one after another, oldest job first, in the channel's message budget at ``BACKGROUND``
priority (a result or a failure notice in the same channel goes first, see ``budget``), and writes
the text the job has when its turn comes: its queue position then, its progress, or its final text
if it ended meanwhile. Then it records the message (``set_status_message``) and the delivery loop
keeps it current.

Never lost: a 429 is waited out by discord.py; a 5xx or network error is retried with backoff; a
message posted but not recorded (database down) is recorded later without posting again; and the
delivery loop's sweep (start-up and every minute) hands over every queued or running job that still
has no status message, so a restart between the answer and the post still posts it. Channel
messages carry ``nonce="status-<id>"`` with ``enforce_nonce`` so Discord drops a duplicate sent
within a few minutes (a crash between posting and recording). Only a 403/404 or another 4xx is final:
no permission to post in this channel, or the channel is gone; the job still runs and its result goes
out as the interaction follow-up, which needs no channel permission.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import discord

from bot.delivery.budget import BACKGROUND, CREATE, ChannelBudget
from bot.delivery.notify import Notifier
from bot.discord_http import TRANSIENT, http_reason
from bot.ports import DeliveryHost
from bot.ui import texts
from bot.ui.buttons import cancel_view
from videobot.jobs import JobQueue
from videobot.models import Job, JobStatus

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0


def status_nonce(job_id: int) -> str:
    """≤ 25 characters; different from the result's nonce."""
    return f"status-{job_id}"


class StatusPoster:
    """Owes status messages per channel and posts them, one channel task each (owned here)."""

    def __init__(
        self,
        bot: DeliveryHost,
        queue: JobQueue,
        notifier: Notifier,
        budget: ChannelBudget,
        *,
        on_posted: Callable[[int, str], None],
    ) -> None:
        self.bot = bot
        self.queue = queue
        self.notifier = notifier
        self.budget = budget
        self.on_posted = on_posted
        self._owed: dict[int, dict[int, None]] = {}  # channel id -> job ids (ordered set)
        self._recorded_later: dict[int, int] = {}  # job id -> message id posted but not recorded yet
        self._given_up: set[int] = set()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.posted = 0

    def owe(self, job_id: int, channel_id: int) -> None:
        """Post this job's status message (soon; idempotent: once per job)."""
        if job_id in self._given_up:
            return
        self._owed.setdefault(channel_id, {})[job_id] = None
        task = self._tasks.get(channel_id)
        if task is None or task.done():
            self._tasks[channel_id] = asyncio.create_task(
                self._channel(channel_id), name=f"status-posts-{channel_id}"
            )

    def owed(self) -> int:
        return sum(len(v) for v in self._owed.values())

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def _channel(self, channel_id: int) -> None:
        owed = self._owed.setdefault(channel_id, {})
        failures = 0
        while owed:
            job_id = min(owed)
            try:
                await self._post_one(job_id, channel_id)
                owed.pop(job_id, None)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(2.0**failures, MAX_BACKOFF_SECONDS)
                log.warning(
                    "job %s: status message not posted yet (%s: %s); retrying in %.0f s",
                    job_id, type(exc).__name__, str(exc)[:200], delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
        self._tasks.pop(channel_id, None)

    async def _post_one(self, job_id: int, channel_id: int) -> None:
        message_id = self._recorded_later.get(job_id)
        if message_id is None:
            await self.budget.acquire(CREATE, channel_id, BACKGROUND, job_id)
            job = await self.queue.get(job_id)
            if job is None or job.status_message_id:
                self.budget.release(CREATE, channel_id)
                return
            text = await self._text(job)
            try:
                message = await self._send(job, text)
            except discord.HTTPException as exc:
                if exc.status == 429 or exc.status >= 500:
                    raise
                log.warning(
                    "job %s: cannot post the status message in channel %s (%s); the job still runs",
                    job.id, job.channel_id, http_reason(exc),
                )  # fmt: skip
                self._given_up.add(job_id)
                return
            except TRANSIENT:
                raise
            message_id = message.id
            self._recorded_later[job_id] = message_id
            self.posted += 1
        else:
            job = await self.queue.get(job_id)
            if job is None:
                self._recorded_later.pop(job_id, None)
                return
            text = await self._text(job)
        await self.queue.set_status_message(job_id, message_id)
        self._recorded_later.pop(job_id, None)
        self.on_posted(job_id, text)

    async def _text(self, job: Job) -> str:
        """The status text the job has now, in the server's language (a public message)."""
        locale = await self.notifier.locale(job)
        if job.status == JobStatus.QUEUED.value:
            return texts.status_text(locale, job, await self.queue.position(job))
        return self.notifier.final_text(locale, job) or texts.status_text(locale, job, None)

    async def _send(self, job: Job, text: str) -> discord.Message:
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        reference = None
        if job.reply_to_message_id:  # a rerun, remix or extension replies to the result it came from
            reference = discord.MessageReference(
                message_id=job.reply_to_message_id, channel_id=job.channel_id, fail_if_not_exists=False
            )
        started = time.monotonic()
        extra: dict[str, Any] = {}
        if job.status in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
            extra["view"] = cancel_view(job.id, await self.notifier.locale(job))  # removed by the final text
        message = await channel.send(
            text,
            reference=reference,  # type: ignore[arg-type]
            nonce=status_nonce(job.id),
            allowed_mentions=discord.AllowedMentions.none(),
            **extra,
        )
        log.debug(
            "job %s: status message %s posted in %.2f s", job.id, message.id, time.monotonic() - started
        )
        return message
