"""``/queue`` (your jobs and the queue length) and ``/cancel`` (your job; moderators any job)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import is_moderator
from bot.cogs.generate import _format
from videobot.errors import JobNotFound
from videobot.health import record_ack

if TYPE_CHECKING:
    from bot.app import VideoBot

log = logging.getLogger(__name__)


class JobsCog(commands.Cog):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    @app_commands.command(name="queue", description="Your videos in progress and how long the queue is")
    @app_commands.guild_only()
    async def queue_cmd(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        record_ack(interaction.created_at)
        assert interaction.guild_id is not None
        mine = await self.bot.queue.user_jobs(interaction.guild_id, interaction.user.id)
        length = await self.bot.queue.queue_length()
        lines = [f"{length} video(s) waiting in the queue."]
        if not mine:
            lines.append("You have no videos waiting or in progress. Make one with /video.")
        for job, position in mine:
            prompt = _format.truncate(_format.escape(_format.prompt_of(job)), 80)
            if job.status == "running":
                total = job.progress_total or 0
                where = f"running, step {job.progress_step}/{total}" if total else "running"
            else:
                where = f"#{position} in the queue"
            lines.append(f"• {_format.job_marker(job.id)}: {where} — {prompt}")
        if mine:
            lines.append("Cancel one with `/cancel job:<number>` (your credit is refunded).")
        await interaction.edit_original_response(
            content=_format.truncate("\n".join(lines), _format.MAX_CONTENT)
        )

    @app_commands.command(name="cancel", description="Cancel your video (moderators: any video)")
    @app_commands.describe(job="The job number (empty: your latest one)")
    @app_commands.guild_only()
    async def cancel(
        self, interaction: discord.Interaction, job: app_commands.Range[int, 1] | None = None
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        record_ack(interaction.created_at)
        assert interaction.guild_id is not None
        user_id = interaction.user.id
        if job is None:
            mine = await self.bot.queue.user_jobs(interaction.guild_id, user_id)
            if not mine:
                raise JobNotFound("You have no videos waiting or in progress. /queue lists your jobs.")
            job = max(j.id for j, _ in mine)
            moderator = False
        else:
            existing = await self.bot.queue.get(job)
            moderator = (
                existing is not None
                and existing.guild_id == interaction.guild_id
                and existing.user_id != user_id
                and await is_moderator(self.bot, interaction)
            )
            if existing is not None and existing.guild_id != interaction.guild_id:
                raise JobNotFound(f"I can't find a job #{job} of yours. /queue lists your jobs.")
        outcome = await self.bot.queue.cancel(job, user_id=user_id, is_moderator=moderator)
        self.bot.delivery.wake()
        text = _format.cancel_answer(outcome.state, outcome.job, user_id)
        if moderator:
            log.info("job %s cancelled by moderator %s: %s", job, user_id, outcome.state)
        await interaction.edit_original_response(
            content=text, allowed_mentions=discord.AllowedMentions.none()
        )

    @cancel.autocomplete("job")
    async def _job_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        if interaction.guild_id is None:
            return []
        mine = await self.bot.queue.user_jobs(interaction.guild_id, interaction.user.id)
        out = []
        for job, _ in mine:
            label = f"#{job.id} {job.status}: {_format.prompt_of(job)}"[:100]
            if current.strip().lstrip("#") in str(job.id) or not current.strip():
                out.append(app_commands.Choice(name=label, value=job.id))
        return out[:25]


async def setup(bot: VideoBot) -> None:
    await bot.add_cog(JobsCog(bot))
