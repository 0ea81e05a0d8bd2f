"""``/queue`` (your jobs and the queue length) and ``/cancel`` (your job; moderators any job)."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import is_moderator
from bot.cogs.generate._requests import Requests
from bot.i18n import member_locale
from bot.ports import CommandHost
from bot.ui import texts
from videobot.errors import JobNotFound
from videobot.health import record_ack
from videobot.i18n import Number, msg, t, tn
from videobot.jobs.records import JOB_NOT_FOUND
from videobot.models import Job

log = logging.getLogger(__name__)


def format_queue(locale: str, length: int, mine: list[tuple[Job, int]]) -> str:
    """The /queue reply in ``locale``: the queue's length, then the member's own jobs."""
    lines = [tn(locale, "{n} video waiting in the queue.", "{n} videos waiting in the queue.", length)]
    if not mine:
        lines.append(t(locale, "You have no videos waiting or in progress. Make one with /video."))
    for job, position in mine:
        prompt = texts.truncate(texts.escape(texts.prompt_of(job)), 80)
        total = job.progress_total or 0
        if job.status == "running" and total:
            where = t(
                locale, "running, step {step}/{total}", step=Number(job.progress_step), total=Number(total)
            )
        elif job.status == "running":
            where = t(locale, "running")
        else:
            where = t(locale, "#{position} in the queue", position=Number(position))
        tags = [
            tag
            for tag in (
                texts.lineage_note(locale, job),
                texts.style_note(locale, job),
                texts.enhanced_tag(locale, job),
            )
            if tag
        ]
        # One list, one separator: "(Rerun of job #3 · loop · style `ink` · prompt enhanced)".
        origin = " (" + " · ".join(tags) + ")" if tags else ""
        lines.append(
            t(
                locale,
                "• job #{job}{origin}: {where} — {prompt}",
                job=job.id,
                origin=origin,
                where=where,
                prompt=prompt,
            )
        )
    if mine:
        lines.append(t(locale, "Cancel one with `/cancel job:<number>` (your credit is refunded)."))
    return texts.truncate("\n".join(lines), texts.MAX_CONTENT)


class JobsCog(commands.Cog):
    def __init__(self, bot: CommandHost) -> None:
        self.bot = bot
        #: /cancel's intake (recorded before its "thinking…"), as for the generate cog's requests.
        self.requests = Requests(bot)

    @app_commands.command(name="queue", description="Your videos in progress and how long the queue is")
    @app_commands.guild_only()
    async def queue_cmd(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        record_ack(interaction.created_at)
        assert interaction.guild_id is not None
        mine = await self.bot.queue.user_jobs(interaction.guild_id, interaction.user.id)
        length = await self.bot.queue.queue_length()
        answer = format_queue(member_locale(interaction), length, mine)
        await interaction.edit_original_response(content=answer)

    @app_commands.command(name="cancel", description="Cancel your video (moderators: any video)")
    @app_commands.describe(job="The job number (empty: your latest one)")
    @app_commands.guild_only()
    async def cancel(
        self, interaction: discord.Interaction, job: app_commands.Range[int, 1] | None = None
    ) -> None:
        # Recorded, then "thinking…": a bot killed before the answer leaves it to the next one.
        async with self.requests.answered_later(interaction, "cancel"):
            await self._cancel(interaction, job)

    async def _cancel(self, interaction: discord.Interaction, job: int | None) -> None:
        assert interaction.guild_id is not None
        user_id = interaction.user.id
        if job is None:
            mine = await self.bot.queue.user_jobs(interaction.guild_id, user_id)
            if not mine:
                raise JobNotFound(msg("You have no videos waiting or in progress. /queue lists your jobs."))
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
                raise JobNotFound(msg(JOB_NOT_FOUND, job=job))
        outcome = await self.bot.queue.cancel(job, user_id=user_id, is_moderator=moderator)
        self.bot.delivery.wake()
        answer = texts.cancel_answer(member_locale(interaction), outcome.state, outcome.job, user_id)
        if moderator:
            log.info("job %s cancelled by moderator %s: %s", job, user_id, outcome.state)
        await interaction.edit_original_response(
            content=answer, allowed_mentions=discord.AllowedMentions.none()
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
            label = f"#{job.id} {job.status}: {texts.prompt_of(job)}"[:100]
            if current.strip().lstrip("#") in str(job.id) or not current.strip():
                out.append(app_commands.Choice(name=label, value=job.id))
        return out[:25]


async def setup(bot: CommandHost) -> None:
    await bot.add_cog(JobsCog(bot))
