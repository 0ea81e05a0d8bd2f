"""Posting a finished video exactly once, across restarts (see the package docstring for the steps).

``ResultPoster.deliver`` looks for an earlier post when one may exist, posts otherwise (interaction
follow-up while the token is valid, else a channel message with a nonce; a rerun, remix or extension
replies to the message it came from and says so), with the result's buttons
(``bot.ui.buttons``), and marks the job delivered; then it adds the 🔁 reaction and gives
the status message its final text.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.delivery.budget import CREATE, RESULT
from bot.delivery.editor import StatusEditor
from bot.delivery.notify import Notifier
from bot.discord_http import TRANSIENT, AnswerLost, SendOnce, http_reason
from bot.ports import DeliveryHost
from bot.ui import texts
from bot.ui.buttons import result_view
from videobot import i18n, planning
from videobot.i18n import N_, t
from videobot.jobs import JobQueue
from videobot.models import Job, JobStatus

log = logging.getLogger(__name__)

#: Sends of a result follow-up after server errors, looking for a message made between two tries.
FOLLOW_UP_TRIES = 5
#: Use the interaction follow-up only while the token has at least this long to live.
TOKEN_MARGIN_SECONDS = 60.0
HISTORY_SCAN = 100


class Undeliverable(Exception):
    """Posting cannot succeed by retrying (permissions, unknown channel, too large); the message is an
    English catalog message (``N_``), stored as it is and shown in the server's language."""


NO_PERMISSION = N_("I am missing the permission to post videos in this channel.")
CHANNEL_GONE = N_("The channel no longer exists.")
TOO_LARGE = N_("The video is larger than this server's upload limit.")
REFUSED = N_("Discord refused the message.")
RESULT_MISSING = N_("The finished video is missing from the database.")


class ResultPoster:
    """Posts results; remembers what it posted (or may have posted) in this process."""

    def __init__(
        self,
        bot: DeliveryHost,
        queue: JobQueue,
        editor: StatusEditor,
        notifier: Notifier,
        *,
        db_clock: Callable[[], float],
        started_db: Callable[[], float | None],
        on_held: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.bot = bot
        self.queue = queue
        self.editor = editor
        self.notifier = notifier
        self.db_clock = db_clock
        self._started_db = started_db
        #: Called with a job this poster held instead of posting (the review steps: ``review``).
        self.on_held = on_held
        #: Posted, but not yet marked delivered (the database was down): mark without posting again.
        self.posted: dict[int, int] = {}
        #: An attempt ended without a definite answer: the message may exist.
        self._uncertain: set[int] = set()

    def _maybe_posted(self, job: Job) -> bool:
        started = self._started_db()
        assert started is not None
        return job.id in self._uncertain or (job.finished_at or 0.0) <= started + 1.0

    async def deliver(self, job_id: int) -> None:
        job = await self.queue.get(job_id)
        if job is None or job.status != JobStatus.SUCCEEDED.value:
            return
        message_id = self.posted.get(job_id)
        # The safety policy (issue 21): a flagged result is held, not posted, unless a moderator
        # approved it. A held result was never posted (its score never changes), so no post to find.
        if message_id is None and await self.queue.hold_if_flagged(job_id):
            if self.on_held is not None:
                await self.on_held(job_id)
            return
        if message_id is None and self._maybe_posted(job):
            message_id = await self._find_posted(job)
            if message_id is not None:
                log.info("job %s: already posted as message %s before; not posting again", job_id, message_id)
        if message_id is None:
            results = await self.queue.get_results(job_id)
            if not results:
                await self.notifier.undeliverable(job, RESULT_MISSING)
                return
            try:
                message_id = await self._post(job, results)
            except Undeliverable as exc:
                await self.notifier.undeliverable(job, str(exc))
                return
            self.posted[job_id] = message_id
            self._uncertain.discard(job_id)
            log.info(
                "job %s: posted as message %s (%d video(s), %d bytes)",
                job_id,
                message_id,
                len(results),
                sum(r.size_bytes for r in results),
            )
        await self.queue.mark_delivered(job_id, message_id)
        self.posted.pop(job_id, None)
        await self._after_delivery(job, message_id)

    async def _after_delivery(self, job: Job, message_id: int) -> None:
        """Best effort: the 🔁 reaction and the status message's final text."""
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        message = channel.get_partial_message(message_id)
        try:
            await message.add_reaction(texts.RERUN_EMOJI)
        except discord.HTTPException as exc:
            log.info("job %s: could not add %s (%s)", job.id, texts.RERUN_EMOJI, http_reason(exc))
        except TRANSIENT:
            log.info("job %s: could not add %s", job.id, texts.RERUN_EMOJI)
        # Read again: the status message is posted in the background and may have been recorded
        # after this job was read (the delivery loop's recheck covers one recorded after this).
        fresh = await self.queue.get(job.id)
        status_message_id = fresh.status_message_id if fresh is not None else job.status_message_id
        if status_message_id:
            locale = await self.notifier.locale(job)
            await self.editor.final(
                job.id, job.channel_id, status_message_id, texts.status_done(locale, job, message.jump_url)
            )

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
                http_reason(exc),
            )
            return None
        filenames = texts.result_filenames(job)
        # The footer is in the language the server had when it was posted: any of them.
        footers = {"-# " + texts.job_marker(lang, job.id) + " ·" for lang in i18n.LANGUAGES}
        for m in messages:
            if int(m["author"]["id"]) != me.id:
                continue
            content = m.get("content") or ""
            if any(a.get("filename") in filenames for a in m.get("attachments") or []) or any(
                f in content for f in footers
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

    async def _lineage(self, job: Job) -> tuple[int, int | None]:
        """An extension's number and the job its chain of extensions started from (else 0, None)."""
        if (job.params or {}).get("verb") != "extend" or job.kind != "extend":
            return 0, None
        chain = await self.queue.lineage(job.id, depth=planning.max_extensions(self.bot.settings) + 2)
        n = planning.extension_number(chain)
        return n, (chain[n].id if len(chain) > n else None)

    async def _post(self, job: Job, results: list[Any]) -> int:
        """One message with every video of the job (its variations), each sized by the worker so the
        files together fit Discord's per-request limit; returns its id."""
        extension, origin_id = await self._lineage(job)
        locale = await self.notifier.locale(job)  # a public message: the server's language
        content = texts.result_content(locale, job, results, extension=extension, origin_id=origin_id)
        # Buttons for what the model can do; they carry only the job id and work after any restart.
        view = result_view(locale, job, planning.offered_verbs(self.bot.settings))
        mentions = discord.AllowedMentions(
            users=[discord.Object(job.user_id)], everyone=False, roles=False, replied_user=False
        )

        def files() -> list[discord.File]:  # fresh each try: a sent File's buffer is consumed
            return [
                discord.File(io.BytesIO(r.video), filename=texts.result_filename(job, r.variant))
                for r in results
            ]

        try:
            # A job that answers a message (a rerun under its result, Animate under the picture) is posted
            # as a reply in the channel; interaction follow-ups cannot reply to a message.
            if self._token_valid(job) and not job.reply_to_message_id:
                assert job.application_id is not None and job.interaction_token is not None
                webhook = discord.Webhook.partial(job.application_id, job.interaction_token, client=self.bot)
                webhook.session = SendOnce(webhook.session)  # a 5xx may follow a made message: look first
                try:
                    await self._answer_if_loading(job, webhook, locale)
                    return await self._follow_up(
                        job,
                        lambda: webhook.send(
                            content, files=files(), allowed_mentions=mentions, view=view, wait=True
                        ),
                    )
                except discord.HTTPException as exc:
                    if exc.status not in (401, 404) and exc.code not in (50027, 10015):
                        raise
                    log.info(
                        "job %s: interaction token no longer valid (%s); posting in the channel",
                        job.id,
                        http_reason(exc),
                    )
            channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
            reference = None
            if job.reply_to_message_id:
                reference = discord.MessageReference(
                    message_id=job.reply_to_message_id, channel_id=job.channel_id, fail_if_not_exists=False
                )
            await self.editor.budget.acquire(CREATE, job.channel_id, RESULT, job.id)
            # A server error after Discord made it: discord.py sends it again, and the nonce (with
            # enforce_nonce) makes Discord answer with the message made first.
            message = await channel.send(
                content,
                files=files(),
                allowed_mentions=mentions,
                nonce=texts.result_nonce(job.id),
                reference=reference,  # type: ignore[arg-type]
                view=view,
            )
            return message.id
        except TRANSIENT:
            self._uncertain.add(job.id)  # the message may exist: look before posting again
            raise
        except discord.HTTPException as exc:
            if exc.status == 403:
                raise Undeliverable(NO_PERMISSION) from None
            if exc.status == 404:
                raise Undeliverable(CHANNEL_GONE) from None
            if exc.status == 413 or exc.code == 40005:
                raise Undeliverable(TOO_LARGE) from None
            if 400 <= exc.status < 500 and exc.status != 429:
                log.error(
                    "job %s: Discord refused the result message (%s): %s",
                    job.id,
                    http_reason(exc),
                    exc.text[:300],
                )
                raise Undeliverable(REFUSED) from None
            self._uncertain.add(job.id)
            raise

    async def _follow_up(self, job: Job, send: Callable[[], Awaitable[discord.WebhookMessage]]) -> int:
        """Send the result's follow-up; after a server error (Discord may have made it, and a follow-up
        has no nonce) look in the channel before sending again, at discord.py's own retry pace."""
        for tries in range(FOLLOW_UP_TRIES - 1):
            try:
                return (await send()).id
            except AnswerLost as exc:
                await asyncio.sleep(1 + 2 * tries)
                if (found := await self._find_posted(job)) is not None:
                    log.info(
                        "job %s: made as message %s before the %s; not sent again", job.id, found, exc.status
                    )
                    return found
        return (await send()).id  # a last server error leaves it uncertain: the delivery loop looks later

    async def _answer_if_loading(self, job: Job, webhook: discord.Webhook, locale: str) -> None:
        """Answer the /video's deferred response if it is still "thinking…" (its answer is late: the bot
        died, or Discord rate-limited it). Discord fills a loading deferred response with the first
        follow-up, which would put the video in the requester's ephemeral message, hidden from the channel.
        Only the requester sees this note: it is in their language (``job.locale``), else the server's
        (``locale``: jobs queued before the job kept it).
        """
        locale = job.locale or locale
        try:
            original = await webhook.fetch_message("@original")  # type: ignore[arg-type]
        except discord.DiscordServerError:
            raise
        except discord.HTTPException:
            return  # expired token or dismissed answer: the follow-up gets the same answer, handled below
        if original.flags.loading:
            log.info("job %s: the /video answer is still pending; answering it before the follow-up", job.id)
            await webhook.edit_message(  # type: ignore[arg-type]
                "@original",
                content=t(
                    locale,
                    "Your video ({job}) is ready: posted below.",
                    job=texts.job_marker(locale, job.id),
                ),
            )
