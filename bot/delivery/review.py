"""Held results (issue 21): the review post, the requester's private notice and the "held" status.

The delivery loop asks the core to hold a flagged result before posting it (``JobQueue.hold_if_flagged``,
in ``posting``); a held job whose review post and notice are not done yet (``notified_at`` unset) is
owed, so the steps below run again after any restart until ``mark_held_told``:

1. Without a review channel (or when the bot cannot post in it) the job is rejected at once: the core
   deletes its files and refunds it, and the notifier tells the requester privately.
2. Otherwise the video goes to the review channel as a spoiler (``SPOILER_videobot-<id>.mp4``) with the
   prompt, the requester, the score and a link to the status message, and the Approve and Reject
   buttons (``bot.ui.buttons.review_view``). Posted once: the bot first looks for its own post of the job
   among the channel's newest messages, and the post carries a nonce (``review-<id>``).
3. The requester is told privately (an ephemeral follow-up while the interaction token lives; else a
   neutral public line that mentions them, with nothing of the video), and the status message says
   "held for review".

A decision (``bot.cogs.review``) moves the job on: approved → succeeded, posted by ``posting`` like any
result; rejected → failed, told by ``notify``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

import discord

from bot.delivery.budget import CREATE, RESULT
from bot.delivery.editor import StatusEditor
from bot.delivery.notify import Notifier
from bot.discord_http import http_reason
from bot.ports import DeliveryHost
from bot.ui import texts
from bot.ui.buttons import review_view
from videobot.jobs import JobQueue
from videobot.jobs.review import BOT_ACTOR, NO_REVIEW_MESSAGE, Held
from videobot.models import Job

log = logging.getLogger(__name__)

HISTORY_SCAN = 100


class Reviewer:
    """Asks for a moderator's review of each held result, once."""

    def __init__(
        self,
        bot: DeliveryHost,
        queue: JobQueue,
        editor: StatusEditor,
        notifier: Notifier,
        *,
        db_clock: Callable[[], float],
    ) -> None:
        self.bot = bot
        self.queue = queue
        self.editor = editor
        self.notifier = notifier
        self.db_clock = db_clock

    async def ask(self, job_id: int) -> None:
        held = await self.queue.held(job_id)
        if held is None or held.job.notified_at is not None:
            return
        job = held.job
        if held.review_channel_id is None:
            log.info("job %s: held, and the server has no review channel: rejected", job_id)
            await self.queue.reject(
                job_id, actor_id=BOT_ACTOR, guild_id=job.guild_id, message=NO_REVIEW_MESSAGE
            )
            return
        if not await self._post_for_review(held):
            await self.queue.reject(
                job_id, actor_id=BOT_ACTOR, guild_id=job.guild_id, message=NO_REVIEW_MESSAGE
            )
            return
        locale = await self.notifier.locale(job)
        await self.notifier.tell_privately(
            job,
            texts.held_notice(job.locale or locale, job, held.score, held.refunded),
            texts.held_public_notice(locale, job),
        )
        if job.status_message_id:
            await self.editor.final(
                job.id, job.channel_id, job.status_message_id, texts.status_held(locale, job)
            )
        await self.queue.mark_held_told(job_id)
        log.info("job %s: held result sent for review to channel %s", job_id, held.review_channel_id)

    async def _post_for_review(self, held: Held) -> bool:
        """The review post (once); False when the review channel cannot take it (gone, no permission)."""
        job = held.job
        assert held.review_channel_id is not None
        found = await self._find_review_post(job, held.review_channel_id)
        if found is not None:
            log.info("job %s: already in the review channel as message %s", job.id, found)
            return True
        results = await self.queue.get_results(job.id)
        if not results:
            log.warning("job %s: held, but its files are gone (purged); rejected", job.id)
            return False
        locale = await self.notifier.locale(job)
        status_url = None
        if job.status_message_id:
            origin = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
            status_url = origin.get_partial_message(job.status_message_id).jump_url
        channel = self.bot.get_partial_messageable(held.review_channel_id, guild_id=job.guild_id)
        files = [
            discord.File(io.BytesIO(r.video), filename=texts.review_filename(job, r.variant)) for r in results
        ]
        try:
            await self.editor.budget.acquire(CREATE, held.review_channel_id, RESULT, job.id)
            message = await channel.send(
                texts.review_content(locale, job, held.score, held.level, status_url),
                files=files,
                view=review_view(job.id, locale),
                nonce=texts.review_nonce(job.id),
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.HTTPException as exc:
            if exc.status >= 500 or exc.status == 429:
                raise  # the delivery loop tries again
            log.warning("job %s: cannot post in the review channel (%s)", job.id, http_reason(exc))
            return False
        log.info("job %s: review post %s in channel %s", job.id, message.id, held.review_channel_id)
        return True

    async def _find_review_post(self, job: Job, channel_id: int) -> int | None:
        """The bot's own review post of this job among the review channel's newest messages, if any."""
        me = self.bot.user
        if me is None:
            return None
        try:
            messages = await self.bot.http.logs_from(channel_id, HISTORY_SCAN)
        except discord.HTTPException as exc:
            if exc.status >= 500:
                raise
            return None
        names = {"SPOILER_" + name for name in texts.result_filenames(job)}
        for m in messages:
            if int(m["author"]["id"]) == me.id and any(
                a.get("filename") in names for a in m.get("attachments") or []
            ):
                return int(m["id"])
        return None
