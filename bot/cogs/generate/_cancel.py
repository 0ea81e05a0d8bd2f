"""A click on the Cancel button of a job's public status message (``bot.ui.buttons.CancelButton``),
for the requester and moderators.

The cancel itself is ``JobQueue.cancel``, as for ``/cancel``: a queued job ends at once (refunded), a
running one stops at its next step after the worker's heartbeat sees the flag. The final status text
removes the button.
"""

from __future__ import annotations

import logging

import discord

from bot.checks import is_moderator
from bot.i18n import member_locale
from bot.ports import CommandHost
from bot.ui import texts
from videobot.i18n import t

log = logging.getLogger(__name__)


async def cancel_click(bot: CommandHost, interaction: discord.Interaction, job_id: int) -> None:
    """Cancel ``job_id`` for the clicking member (already acknowledged: the answer is an edit)."""
    job = await bot.queue.get(job_id)
    user_id = interaction.user.id
    locale = member_locale(interaction)  # an ephemeral answer: the clicking member's language
    if job is None or job.guild_id != interaction.guild_id:
        await _answer(interaction, t(locale, "I can't find job #{job} any more.", job=job_id))
        return
    moderator = job.user_id != user_id and await is_moderator(bot, interaction)
    if job.user_id != user_id and not moderator:
        log.info("job %s: cancel button refused for %s (not the requester)", job.id, user_id)
        await _answer(interaction, t(locale, texts.NOT_YOURS))
        return
    outcome = await bot.queue.cancel(job.id, user_id=user_id, is_moderator=moderator)
    bot.delivery.wake()
    log.info(
        "job %s: cancel button by %s%s: %s",
        job.id,
        user_id,
        " (moderator)" if moderator else "",
        outcome.state,
    )
    await _answer(interaction, texts.cancel_answer(locale, outcome.state, outcome.job, user_id))


async def _answer(interaction: discord.Interaction, answer: str) -> None:
    await interaction.edit_original_response(content=answer, allowed_mentions=discord.AllowedMentions.none())
