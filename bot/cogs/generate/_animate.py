"""The modal Apps → Animate opens: one optional text input (``prompt``), the motion to make.

It lives in this process's memory between the member opening it and submitting it (a modal needs no
state across restarts: one opened before a restart simply fails on Discord's side and is opened again).
The picture is downloaded only when the modal is submitted, right after that interaction is
acknowledged: the CDN URL comes from the message Discord just resolved, so it is fresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot import errors as bot_errors
from videobot.presets import MAX_PROMPT_CHARS

from . import _format

if TYPE_CHECKING:
    from ._cog import GenerateCog

PROMPT_ID = "prompt"
MODAL_SECONDS = 15 * 60


class AnimateModal(discord.ui.Modal):
    """ "Animate this picture": what should move (empty: natural motion)."""

    def __init__(
        self, cog: GenerateCog, message: discord.Message, attachment: discord.Attachment, locale: str = "en"
    ) -> None:
        # In the language of the member who opened it (``locale``: ``member_locale``).
        super().__init__(
            title=_format.label(locale, _format.ANIMATE_TITLE, _format.MAX_TITLE),
            timeout=MODAL_SECONDS,
            custom_id=f"animate:{message.id}"[:100],
        )
        self.cog = cog
        self.message = message
        self.attachment = attachment
        self.prompt: discord.ui.TextInput[AnimateModal] = discord.ui.TextInput(
            label=_format.label(locale, _format.ANIMATE_LABEL, _format.MAX_TITLE),
            custom_id=PROMPT_ID,
            style=discord.TextStyle.paragraph,
            placeholder=_format.label(locale, _format.ANIMATE_PLACEHOLDER, _format.MAX_PLACEHOLDER),
            required=False,
            max_length=MAX_PROMPT_CHARS,
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        await self.cog.animate_submitted(interaction, self.message, self.attachment, self.prompt.value or "")

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:  # type: ignore[override]
        # The same typed refusals and reference ids as the command tree's handler.
        await bot_errors.on_app_command_error(interaction, error)  # type: ignore[arg-type]
