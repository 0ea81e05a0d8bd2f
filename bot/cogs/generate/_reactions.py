"""The reactions on a posted result: 🔁 queues another take (a rerun charged to the reactor), ❌ deletes
it (``_delete``). Read from raw events, so results posted before a restart (uncached) work too. A
reaction has no private answer: a refused rerun gets a short public note that deletes itself; a
refused delete is only logged.
"""

from __future__ import annotations

import logging
import time

import aiohttp
import discord

from bot.ports import CommandHost
from bot.ui import texts
from videobot import guilds
from videobot.errors import VideobotError
from videobot.models import Job

from ._actions import Asker, Posted, ResultActions
from ._delete import Deleter
from ._requests import Requests, member_role_ids

log = logging.getLogger(__name__)

#: A member reruns a result at most once per this many seconds (counted from their last rerun of it).
RERUN_COOLDOWN_SECONDS = 30
FEEDBACK_SECONDS = 15


class Reactions:
    """🔁 and ❌ on the bot's results (the cog owns one)."""

    def __init__(
        self, bot: CommandHost, requests: Requests, actions: ResultActions, deleter: Deleter
    ) -> None:
        self.bot = bot
        self.requests = requests
        self.actions = actions
        self.deleter = deleter

    async def on_reaction(self, payload: discord.RawReactionActionEvent) -> None:
        emoji = str(payload.emoji)
        if emoji not in (texts.RERUN_EMOJI, texts.DELETE_EMOJI) or payload.guild_id is None:
            return
        me = self.bot.user
        if me is None or payload.user_id == me.id or (payload.member is not None and payload.member.bot):
            return
        if payload.message_author_id is not None and payload.message_author_id != me.id:
            return
        try:
            job = await self.bot.queue.by_result_message(payload.message_id)
            posted = None
            if job is None:
                if payload.message_author_id != me.id:
                    return  # not known to be the bot's message: not worth asking Discord
                posted, job = await self._posted_unmarked(payload)
                if job is None:
                    return
            if emoji == texts.RERUN_EMOJI:
                await self._rerun(payload, job, posted)
            else:
                await self._delete(payload, job, posted)
        except Exception:
            log.exception(
                "reaction %s on message %s by %s failed", emoji, payload.message_id, payload.user_id
            )

    async def _posted_unmarked(
        self, payload: discord.RawReactionActionEvent
    ) -> tuple[Posted | None, Job | None]:
        """A reaction on a result posted but not yet marked delivered (the database write still on its
        way): the message itself, read from Discord, says which job it shows."""
        try:
            posted = Posted.from_data(await self.bot.http.get_message(payload.channel_id, payload.message_id))
        except (discord.HTTPException, aiohttp.ClientError, OSError):
            return None, None
        job_id = posted.job_id()
        job = await self.bot.queue.get(job_id) if job_id is not None else None
        me = self.bot.user
        if job is None or job.guild_id != payload.guild_id or not posted.shows(job, me.id if me else None):
            return None, None
        return posted, job

    async def _rerun(
        self, payload: discord.RawReactionActionEvent, parent: Job, posted: Posted | None = None
    ) -> None:
        assert payload.guild_id is not None
        since = await self.bot.queue.seconds_since_child(parent.id, payload.user_id, "rerun")
        if since is not None and since < RERUN_COOLDOWN_SECONDS:
            log.info(
                "job %s: rerun reaction by %s inside the cooldown (%.0f s after the last); not queued again",
                parent.id,
                payload.user_id,
                since,
            )
            return
        # Reactions that arrive together share a key (one job); the look above is the cooldown itself.
        bucket = int(time.time() // RERUN_COOLDOWN_SECONDS)
        async with self.bot.db.sessionmaker() as s:
            view = await guilds.get_config(s, payload.guild_id)
        asker = Asker(
            guild_id=payload.guild_id,
            channel_id=payload.channel_id,
            user_id=payload.user_id,
            role_ids=member_role_ids(payload.member),
            message_id=payload.message_id,
            upload_limit=view.upload_limit_bytes or self.bot.settings.upload_limit_bytes,
            # The channel rules and blocklist may have changed since the original was made.
            channel=self.bot.get_channel(payload.channel_id),
            posted=posted,
        )
        try:
            submitted, _ = await self.actions.submit(
                asker,
                parent.id,
                "rerun",
                idempotency_key=f"rerun:{payload.message_id}:{payload.user_id}:{bucket}",
            )
        except VideobotError as exc:
            # A public note (a reaction has no member locale): in the server's language.
            await self._feedback(payload, exc.render(await self.bot.languages.locale(payload.guild_id)))
            return
        if not submitted.created:
            log.info(
                "job %s: rerun reaction by %s inside the cooldown; not queued again",
                submitted.job.id,
                payload.user_id,
            )
            return
        # The status message replies to the reacted-to result (``reply_to_message_id``).
        self.requests.owe_status(submitted)

    async def _feedback(self, payload: discord.RawReactionActionEvent, note: str) -> None:
        """A short note that mentions (and pings) only the reactor and deletes itself."""
        channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        try:
            await channel.send(
                texts.truncate(f"<@{payload.user_id}> {note}", texts.MAX_CONTENT),
                delete_after=FEEDBACK_SECONDS,
                allowed_mentions=discord.AllowedMentions(
                    users=[discord.Object(payload.user_id)], everyone=False, roles=False, replied_user=False
                ),
            )
        except discord.HTTPException as exc:
            log.info(
                "could not post reaction feedback in channel %s (%s %s)",
                payload.channel_id,
                exc.status,
                exc.code,
            )

    async def _delete(self, payload: discord.RawReactionActionEvent, job: Job, posted: Posted | None) -> None:
        assert payload.guild_id is not None
        try:
            await self.deleter.delete(
                job,
                job_id=job.id,
                guild_id=payload.guild_id,
                channel_id=payload.channel_id,
                message=posted or Posted(payload.message_id, payload.message_author_id, frozenset()),
                user_id=payload.user_id,
                member=payload.member,
                reason=f"{texts.DELETE_EMOJI} by {payload.user_id}",
            )
        except VideobotError as exc:  # a reaction has no private answer: the refusal is only logged
            log.info("job %s: %s by %s ignored (%s)", job.id, texts.DELETE_EMOJI, payload.user_id, exc.code)
