"""The Cancel button on a job's public status message (for the requester and moderators).

A ``DynamicItem`` whose ``custom_id`` carries the job id (``videobot:cancel:<job id>``), so the button
works after a restart. The cancel itself is ``JobQueue.cancel``, as for ``/cancel``: a queued job ends
at once (refunded), a running one stops at its next step after the worker's heartbeat sees the flag.
The final status text removes the button.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord

from bot.checks import is_moderator
from bot.cogs.generate import _format
from bot.cogs.generate._buttons import _cog
from bot.i18n import member_locale
from videobot.i18n import N_, t

if TYPE_CHECKING:
    from bot.app import VideoBot

log = logging.getLogger(__name__)

NOT_YOURS = N_("Only the member who asked for this video, or a moderator, can cancel it.")
CANCEL = N_("Cancel")


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"videobot:cancel:(?P<job_id>\d+)"
):
    """🛑 Cancel on a status message (labelled in the message's language: the server's)."""

    def __init__(self, job_id: int, locale: str = "en") -> None:
        super().__init__(
            discord.ui.Button(
                label=_format.label(locale, CANCEL, _format.MAX_BUTTON_LABEL),
                emoji="🛑",
                style=discord.ButtonStyle.secondary,
                custom_id=f"videobot:cancel:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CancelButton:
        return cls(int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        # Recorded, then "thinking…": a bot killed before the answer leaves it to the next one. A refusal
        # gets the tree's handler there (a polite ephemeral answer with a reference id).
        async with _cog(interaction).answered_later(interaction, "cancel"):
            await self._cancel(interaction)

    async def _cancel(self, interaction: discord.Interaction) -> None:
        bot: VideoBot = interaction.client  # type: ignore[assignment]
        job = await bot.queue.get(self.job_id)
        user_id = interaction.user.id
        locale = member_locale(interaction)  # an ephemeral answer: the clicking member's language
        if job is None or job.guild_id != interaction.guild_id:
            await _answer(interaction, t(locale, "I can't find job #{job} any more.", job=self.job_id))
            return
        moderator = job.user_id != user_id and await is_moderator(bot, interaction)
        if job.user_id != user_id and not moderator:
            log.info("job %s: cancel button refused for %s (not the requester)", job.id, user_id)
            await _answer(interaction, t(locale, NOT_YOURS))
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
        await _answer(interaction, _format.cancel_answer(locale, outcome.state, outcome.job, user_id))


async def _answer(interaction: discord.Interaction, text: str) -> None:
    await interaction.edit_original_response(content=text, allowed_mentions=discord.AllowedMentions.none())


def cancel_view(job_id: int, locale: str = "en") -> discord.ui.View:
    """The status message's components: the Cancel button, in the server's language (``locale``)."""
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id, locale))
    return view


def register(bot: VideoBot) -> None:
    """Route every ``videobot:cancel:<id>`` click to ``CancelButton`` (after restarts too)."""
    bot.add_dynamic_items(CancelButton)
