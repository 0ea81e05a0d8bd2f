"""The moderators' review queue (issue 21): Approve and Reject under a held result in the review channel
(``bot.delivery.review`` posts it). Only moderators may decide; anyone else is refused privately.

Approve moves the job back to ``succeeded`` (the core: ``JobQueue.approve``), and the delivery loop posts it
where it was asked through the one posting path, with its once-only guarantees. Reject deletes its stored
files and refunds it (``JobQueue.reject``); the delivery loop tells the requester. Either way the review
post loses its buttons (and, rejected, its video) and says who decided. A second click, or a click on a
result already decided, changes nothing and says so.
"""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot import errors as bot_errors
from bot.checks import ack, is_moderator
from bot.i18n import member_locale
from bot.ports import CommandHost
from bot.ui import buttons, texts
from videobot.i18n import N_, t

log = logging.getLogger(__name__)

NOT_A_MODERATOR = N_("Only moderators can approve or reject held videos.")
ALREADY_DECIDED = N_("This video is no longer waiting for a review (decided already, or deleted).")
APPROVED = N_("Approved: the video ({job}) will be posted where it was asked.")
REJECTED = N_("Rejected: the video ({job}) was deleted, and its requester is told.")


class ReviewCog(commands.Cog):
    """Answers the review buttons (``bot.ui.buttons.REVIEW_ITEMS``), registered once, after any restart."""

    def __init__(self, bot: CommandHost) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(*buttons.REVIEW_ITEMS)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*buttons.REVIEW_ITEMS)

    @commands.Cog.listener(f"on_{buttons.REVIEW_EVENT}")
    async def on_review(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        try:
            await ack(interaction)
            await self._decide(interaction, action, job_id)
        except Exception as exc:  # the tree's handler: a polite ephemeral answer with a reference id
            await bot_errors.on_app_command_error(interaction, exc)  # type: ignore[arg-type]

    async def _decide(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        locale = member_locale(interaction)
        if interaction.guild_id is None or not await is_moderator(self.bot, interaction):
            log.info("job %s: %s refused to %s (not a moderator)", job_id, action, interaction.user.id)
            await interaction.edit_original_response(content=t(locale, NOT_A_MODERATOR))
            return
        approve = action == buttons.ApproveButton.action
        moderator = interaction.user.id
        if approve:
            decided = await self.bot.queue.approve(
                job_id, moderator_id=moderator, guild_id=interaction.guild_id
            )
        else:
            decided = await self.bot.queue.reject(job_id, actor_id=moderator, guild_id=interaction.guild_id)
        if not decided:
            await interaction.edit_original_response(content=t(locale, ALREADY_DECIDED))
            return
        self.bot.delivery.wake()
        log.info("job %s: %s by moderator %s", job_id, "approved" if approve else "rejected", moderator)
        job = await self.bot.queue.get(job_id)
        if interaction.message is not None and job is not None:
            public = await self.bot.languages.locale(interaction.guild_id)
            edit: dict[str, object] = {"view": None}
            if not approve:
                edit["attachments"] = []  # the stored file is gone; the review post keeps no copy
            try:
                await interaction.message.edit(
                    content=texts.review_decided(public, job, approve, moderator),
                    allowed_mentions=discord.AllowedMentions.none(),
                    **edit,  # type: ignore[arg-type]
                )
            except discord.HTTPException as exc:
                log.warning("job %s: could not update the review post (%s)", job_id, exc.status)
        text = t(locale, APPROVED if approve else REJECTED, job=texts.job_marker(locale, job_id))
        await interaction.edit_original_response(content=text)


async def setup(bot: commands.Bot) -> None:
    """Extension entry point (``bot.cogs.review``)."""
    await bot.add_cog(ReviewCog(bot))  # type: ignore[arg-type]
