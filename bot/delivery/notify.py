"""Telling people how a job ended when it did not end in a posted video: the status message's final
text and, for failures (or when the status message is gone), a notice that mentions the requester.

Both are public: in the server's language (``bot.languages.locale``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import discord

from bot.delivery.budget import CREATE, RESULT
from bot.delivery.editor import StatusEditor
from bot.discord_http import http_reason
from bot.ports import DeliveryHost
from bot.ui import texts
from videobot.i18n import t
from videobot.jobs import JobQueue
from videobot.models import Job, JobStatus

log = logging.getLogger(__name__)

#: Answer privately on the interaction only while its token has at least this long to live.
PRIVATE_TOKEN_MARGIN_SECONDS = 30.0


class Notifier:
    """Final status texts and failure notices (each requester told once: ``mark_notified``)."""

    def __init__(
        self,
        bot: DeliveryHost,
        queue: JobQueue,
        editor: StatusEditor,
        *,
        db_clock: Callable[[], float] = time.time,
    ) -> None:
        self.bot = bot
        self.queue = queue
        self.editor = editor
        self.budget = editor.budget
        self.db_clock = db_clock

    async def locale(self, job: Job) -> str:
        """The language of the job's public messages (the server's)."""
        return await self.bot.languages.locale(job.guild_id)

    async def undeliverable(self, job: Job, reason: str) -> None:
        """``reason``: an English catalog message (``N_``), stored as it is and shown translated."""
        log.warning("job %s: undeliverable: %s", job.id, reason)
        await self.queue.mark_undeliverable(job.id, reason)
        if job.status_message_id:
            locale = await self.locale(job)
            line = t(
                locale,
                "The video was made but could not be posted here: {reason} Your credit was refunded.",
                reason=t(locale, reason),
            )
            text = f"{texts.status_header(locale, job)}\n⚠️ {line}"
            await self.editor.final(job.id, job.channel_id, job.status_message_id, text)

    async def tell_privately(self, job: Job, private: str, public: str) -> None:
        """Tell the requester alone: an ephemeral follow-up on their interaction while its token lives
        (``private``, in their language); else a neutral public line that mentions them (``public``,
        in the server's language: nothing there may say more than the status message)."""
        if (
            job.interaction_token
            and job.application_id
            and job.interaction_expires_at
            and job.interaction_expires_at - self.db_clock() > PRIVATE_TOKEN_MARGIN_SECONDS
        ):
            webhook = discord.Webhook.partial(job.application_id, job.interaction_token, client=self.bot)  # type: ignore[arg-type]
            webhook.type = discord.WebhookType.application  # an interaction's follow-up may be ephemeral
            try:
                await webhook.send(private, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
                return
            except discord.HTTPException as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise
                log.info(
                    "job %s: cannot answer privately (%s); telling in the channel", job.id, http_reason(exc)
                )
        await self.notice_in_channel(job, public)

    async def notice_in_channel(self, job: Job, text: str) -> None:
        """A line in the job's channel, replying to its status message, that mentions the requester (a
        refusal other than a server error or rate limit is logged, not raised)."""
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        reference = None
        if job.status_message_id:
            reference = discord.MessageReference(
                message_id=job.status_message_id, channel_id=job.channel_id, fail_if_not_exists=False
            )
        try:
            await self.budget.acquire(CREATE, job.channel_id, RESULT, job.id)
            await channel.send(
                text,
                reference=reference,  # type: ignore[arg-type]
                allowed_mentions=discord.AllowedMentions(
                    users=[discord.Object(job.user_id)], everyone=False, roles=False, replied_user=False
                ),
            )
        except discord.HTTPException as exc:
            if exc.status >= 500 or exc.status == 429:
                raise
            log.warning("job %s: could not tell the requester (%s)", job.id, http_reason(exc))

    def final_text(self, locale: str, job: Job) -> str | None:
        """The status text of a job that ended (delivered, undeliverable, failed, cancelled), else None."""
        if job.status == JobStatus.DELIVERED.value and job.result_message_id:
            channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
            return texts.status_done(locale, job, channel.get_partial_message(job.result_message_id).jump_url)
        if job.status == JobStatus.UNDELIVERABLE.value:
            return texts.status_undeliverable(locale, job)
        if job.status == JobStatus.FAILED.value and job.error_code in texts.PRIVATE_FAILURES:
            return texts.status_not_made(locale, job)
        if job.status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value):
            return texts.status_failed(locale, job)
        if job.status == JobStatus.HELD.value:
            return texts.status_held(locale, job)
        return None

    async def final_status(self, job_id: int) -> None:
        """The status message of a job that ended before its status message was recorded."""
        job = await self.queue.get(job_id)
        if job is None or not job.status_message_id:
            return
        locale = await self.locale(job)
        text = self.final_text(locale, job) or texts.status_failed(locale, job)
        await self.editor.final(job.id, job.channel_id, job.status_message_id, text)

    async def notify(self, job_id: int) -> None:
        job = await self.queue.get(job_id)
        if job is None or job.notified_at is not None:
            return
        if job.status not in (JobStatus.FAILED.value, JobStatus.CANCELLED.value):
            return
        told = False
        locale = await self.locale(job)
        if job.status == JobStatus.FAILED.value and job.error_code in texts.PRIVATE_FAILURES:
            # A refused picture, a rejected result: the reason is the requester's alone.
            if job.status_message_id:
                await self.editor.final(
                    job.id, job.channel_id, job.status_message_id, texts.status_not_made(locale, job)
                )
            reason = texts.why_failed(job.locale or locale, job)
            await self.tell_privately(
                job,
                f"{texts.job_marker(job.locale or locale, job.id)}: {reason}",
                texts.private_failure_public_notice(locale, job),
            )
            await self.queue.mark_notified(job.id)
            log.info("job %s: requester told privately it %s (%s)", job.id, job.status, job.error_code)
            return
        if job.status_message_id:
            told = await self.editor.final(
                job.id, job.channel_id, job.status_message_id, texts.status_failed(locale, job)
            )
        # A failure, or a cancellation the member did not ask for (it waited too long), mentions them.
        if job.status == JobStatus.FAILED.value or job.error_code == "expired" or not told:
            await self.notice_in_channel(job, texts.failure_notice(locale, job))
        await self.queue.mark_notified(job.id)
        log.info("job %s: requester told it %s", job.id, job.status)
