"""``/video`` and the 🔁 / ❌ reactions on results: parse, call the services, format the answer.

Acknowledgement design: the first thing ``/video`` does is ``defer(ephemeral=True, thinking=True)``,
before any database or disk work, because the 3 s deadline must hold even when the database is
slow under a burst. Whether the request will be refused is only known after the database check,
and a deferred response keeps the visibility chosen at defer time, so the defer is ephemeral:

* refused (quota, too many queued, blocked prompt, channel, bad options): the ephemeral
  "thinking…" becomes the reason and what to do; nobody else sees anything;
* accepted: the ephemeral response becomes a short "Queued as job #N (#k in the queue)" note at
  once, and only then is the PUBLIC status message (the requester, the prompt, the queue position,
  later the progress bar) handed to the delivery service, which posts it in the background
  (``bot.delivery.status``): a channel allows ~5 messages per 5 s, so under a burst the status
  posts lag by minutes while every member still has their answer within a second or two. The
  answer carries no link to the status message (it does not exist yet when the answer is sent; an
  extra edit per job to add it would cost an interaction request per member for little). The result
  is posted publicly later (interaction follow-up while the token is valid, else a channel message).

The alternative, a public defer, would show a public "thinking…" for refusals too, and the only
way to make a refusal private then is deleting the public response and sending an ephemeral
follow-up: a visible flicker for every refused request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import is_moderator, role_ids
from videobot import guilds, planning
from videobot.errors import ChannelNotAllowed, InvalidParameters, PromptRejected, QuotaExceeded, TooManyQueued
from videobot.health import record_ack
from videobot.jobs import SubmitRequest
from videobot.models import Job
from videobot.presets import MAX_VIDEOS

from . import _format

if TYPE_CHECKING:
    from bot.app import VideoBot

log = logging.getLogger(__name__)

RERUN_EMOJI = "🔁"
DELETE_EMOJI = "❌"
#: Reaction spam inside one window queues at most one rerun per member and message.
RERUN_COOLDOWN_SECONDS = 30
FEEDBACK_SECONDS = 15


def member_role_ids(member: object) -> list[int]:
    """Role ids as Discord sent them (``Member.roles`` drops roles missing from the cache)."""
    return role_ids(member) if isinstance(member, discord.Member) else []


class GenerateCog(commands.Cog):
    """/video, and reactions on posted videos."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        #: guild id → the upload limit this process last wrote (or is writing) for it.
        self._remembered_limits: dict[int, int] = {}

    # ------------------------------------------------------------------ /video
    @app_commands.command(name="video", description="Make a short video from a text prompt")
    @app_commands.describe(
        prompt="What the video shows, e.g. a red fox running through fresh snow",
        negative_prompt="What to avoid, e.g. blurry, text, watermark",
        seed="A whole number from 0 to 4294967295 to repeat a result (empty: random)",
        duration="Length in seconds (empty: the model's default)",
        aspect_ratio="Landscape, portrait or square",
        model="The model to use (empty: the server's default)",
        audio="Sound with the video (empty: on when the model makes sound)",
        variations="How many takes, each with the next seed, posted together; each costs one video (1-4)",
    )
    @app_commands.choices(
        aspect_ratio=[
            app_commands.Choice(name="16:9 landscape", value="16:9"),
            app_commands.Choice(name="9:16 portrait", value="9:16"),
            app_commands.Choice(name="1:1 square", value="1:1"),
        ]
    )
    @app_commands.guild_only()
    async def video(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 1000],
        negative_prompt: app_commands.Range[str, 1, 1000] | None = None,
        seed: int | None = None,
        duration: float | None = None,
        aspect_ratio: app_commands.Choice[str] | None = None,
        model: str | None = None,
        audio: bool | None = None,
        variations: app_commands.Range[int, 1, MAX_VIDEOS] | None = None,
    ) -> None:
        # Acknowledge first: nothing before this line touches the database or the disk.
        await interaction.response.defer(ephemeral=True, thinking=True)
        record_ack(interaction.created_at)
        settings = self.bot.settings
        target = planning.check_model(settings, model)
        planning.check_audio(settings, audio)
        params = planning.build_params(
            target,
            prompt,
            negative_prompt=negative_prompt,
            seed=seed,
            duration=duration,
            aspect_ratio=aspect_ratio.value if aspect_ratio else None,
            audio=audio,
            num_videos=variations or 1,
        )
        assert interaction.guild_id is not None and interaction.channel_id is not None
        guild_id, channel_id = interaction.guild_id, interaction.channel_id
        limit = int(interaction.filesize_limit)
        await self._check_guild(guild_id, channel_id, params["prompt"], interaction.channel, limit)
        submitted = await self.bot.submitter.submit(
            SubmitRequest(
                idempotency_key=f"interaction:{interaction.id}",
                guild_id=guild_id,
                channel_id=channel_id,
                user_id=interaction.user.id,
                model=target.name,
                params=params,
                cost=planning.job_cost(settings, target, params),
                role_ids=member_role_ids(interaction.user),
                kind="command",
                upload_limit_bytes=limit,
                application_id=interaction.application_id,
                interaction_token=interaction.token,
            )
        )
        self.bot.delivery.wake()
        try:
            # Answer first: the member's "Queued as…" never waits for the channel's message budget.
            await interaction.edit_original_response(
                content=_format.queued_note(submitted.job, submitted.position, submitted.balance, None)
            )
        finally:
            # Then the public status message, also when the answer failed (it is owed either way).
            if not submitted.job.status_message_id:
                self.bot.delivery.post_status(submitted.job.id, submitted.job.channel_id)

    @video.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        cur = current.lower().strip()
        return [
            app_commands.Choice(name=name, value=name)
            for name in planning.offered_models(self.bot.settings)
            if cur in name.lower()
        ][:25]

    async def _check_guild(
        self, guild_id: int, channel_id: int, prompt: str, channel: object, upload_limit: int
    ) -> None:
        """Channel and blocklist rules (raises the refusal), and remember the guild's upload limit."""
        async with self.bot.db.sessionmaker() as s:
            view = await guilds.get_config(s, guild_id)
        parent_id = getattr(channel, "parent_id", None)
        if view.blocklist:
            # The blocklist's regular expressions may take up to the check's time budget: off the loop.
            await asyncio.to_thread(guilds.check_request, view, channel_id, prompt, parent_id=parent_id)
        else:
            guilds.check_request(view, channel_id, prompt, parent_id=parent_id)
        if (
            upload_limit > 0
            and view.upload_limit_bytes != upload_limit
            and self._remembered_limits.get(guild_id) != upload_limit
        ):
            # Once per guild and value: under a burst every request would otherwise write it again.
            self._remembered_limits[guild_id] = upload_limit
            try:
                async with self.bot.db.transaction() as s:
                    await guilds.remember_upload_limit(s, guild_id, upload_limit)
            except BaseException:
                self._remembered_limits.pop(guild_id, None)
                raise

    # ------------------------------------------------------------------ reactions
    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        emoji = str(payload.emoji)
        if emoji not in (RERUN_EMOJI, DELETE_EMOJI) or payload.guild_id is None:
            return
        me = self.bot.user
        if me is None or payload.user_id == me.id or (payload.member is not None and payload.member.bot):
            return
        if payload.message_author_id is not None and payload.message_author_id != me.id:
            return
        try:
            job = await self.bot.queue.by_result_message(payload.message_id)
            if job is None:
                return
            if emoji == RERUN_EMOJI:
                await self._rerun(payload, job)
            else:
                await self._delete(payload, job)
        except Exception:
            log.exception(
                "reaction %s on message %s by %s failed", emoji, payload.message_id, payload.user_id
            )

    async def _rerun(self, payload: discord.RawReactionActionEvent, parent: Job) -> None:
        assert payload.guild_id is not None
        bucket = int(time.time() // RERUN_COOLDOWN_SECONDS)
        async with self.bot.db.sessionmaker() as s:
            view = await guilds.get_config(s, payload.guild_id)
        # The channel rules and blocklist may have changed since the original was made.
        channel_obj = self.bot.get_channel(payload.channel_id)
        try:
            guilds.check_request(
                view,
                payload.channel_id,
                str((parent.params or {}).get("prompt", "")),
                parent_id=getattr(channel_obj, "parent_id", None),
            )
        except (ChannelNotAllowed, PromptRejected) as exc:
            await self._feedback(payload, str(exc))
            return
        limit = view.upload_limit_bytes or self.bot.settings.upload_limit_bytes
        params = planning.rerun_params(parent.params or {})
        try:
            submitted = await self.bot.submitter.submit(
                SubmitRequest(
                    idempotency_key=f"rerun:{payload.message_id}:{payload.user_id}:{bucket}",
                    guild_id=payload.guild_id,
                    channel_id=payload.channel_id,
                    user_id=payload.user_id,
                    model=parent.model,
                    params=params,
                    cost=parent.cost,
                    role_ids=member_role_ids(payload.member),
                    kind="rerun",
                    parent_job_id=parent.id,
                    upload_limit_bytes=limit,
                    reply_to_message_id=payload.message_id,
                )
            )
        except (QuotaExceeded, TooManyQueued, InvalidParameters) as exc:
            await self._feedback(payload, str(exc))
            return
        if not submitted.created:
            log.info(
                "job %s: rerun reaction by %s inside the cooldown; not queued again",
                submitted.job.id,
                payload.user_id,
            )
            return
        self.bot.delivery.wake()
        # The status message replies to the reacted-to result (``reply_to_message_id``).
        self.bot.delivery.post_status(submitted.job.id, submitted.job.channel_id)

    async def _feedback(self, payload: discord.RawReactionActionEvent, text: str) -> None:
        """A short note that mentions (and pings) only the reactor and deletes itself."""
        channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        try:
            await channel.send(
                _format.truncate(f"<@{payload.user_id}> {text}", _format.MAX_CONTENT),
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

    async def _delete(self, payload: discord.RawReactionActionEvent, job: Job) -> None:
        allowed = payload.user_id == job.user_id
        if not allowed and payload.member is not None:
            allowed = await is_moderator(self.bot, payload.member)
        if not allowed:
            log.info("job %s: ❌ by %s ignored (not the requester or a moderator)", job.id, payload.user_id)
            return
        try:
            await self.bot.http.delete_message(
                payload.channel_id, payload.message_id, reason=f"❌ by {payload.user_id}"
            )
        except discord.NotFound:
            return
        except discord.HTTPException as exc:
            log.warning(
                "job %s: could not delete result message %s (%s %s)",
                job.id,
                payload.message_id,
                exc.status,
                exc.code,
            )
            return
        log.info("job %s: result message %s deleted by %s", job.id, payload.message_id, payload.user_id)
