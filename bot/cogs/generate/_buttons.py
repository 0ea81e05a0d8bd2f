"""The buttons under every posted result: Rerun, Remix, Extend, Delete.

Their labels are in the language of the result message they sit on (the server's: ``locale``);
the emoji (🔁 🎨 ⏩ 🗑️) is the same in every language. A click is answered in the clicking
member's own language whatever the labels say.

Each is a ``DynamicItem`` whose custom id carries the job id (``videobot:rerun:<job_id>``), registered
once with ``bot.add_dynamic_items``: a click on any result ever posted is answered, after any restart,
for any member, with no per-message state in memory. What a click does lives in ``_actions`` (the
cog's ``ResultActions``) and in ``GenerateCog``'s click handlers.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

from videobot.models import Job

from . import _format

if TYPE_CHECKING:
    from ._cog import GenerateCog

_ID = r"(?P<job_id>[0-9]{1,20})"
Button = discord.ui.Button[Any]


def _cog(interaction: discord.Interaction) -> GenerateCog:
    cog = interaction.client.get_cog("GenerateCog")  # type: ignore[attr-defined]
    assert cog is not None, "the generate cog is loaded before any button can be clicked"
    return cog  # type: ignore[no-any-return]


class _ResultButton(
    discord.ui.DynamicItem[Button], template=rf"videobot:(?:rerun|remix|extend|delete):{_ID}"
):
    """A button on a result (never registered itself: the four below are); ``action`` is what
    ``GenerateCog.on_button`` does with a click."""

    action = ""

    def __init__(
        self, job_id: int, text: str, style: discord.ButtonStyle, emoji: str | None, locale: str
    ) -> None:
        super().__init__(
            discord.ui.Button(
                label=_format.label(locale, text, _format.MAX_BUTTON_LABEL),
                style=style,
                emoji=emoji,
                custom_id=f"videobot:{self.action}:{job_id}",
            )
        )
        self.job_id = job_id

    async def callback(self, interaction: discord.Interaction) -> None:
        await _cog(interaction).on_button(interaction, self.action, self.job_id)


class RerunButton(_ResultButton, template=rf"videobot:rerun:{_ID}"):
    action = "rerun"

    def __init__(self, job_id: int, locale: str = "en") -> None:
        super().__init__(job_id, _format.BUTTON_RERUN, discord.ButtonStyle.secondary, "🔁", locale)

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RerunButton:
        return cls(int(match["job_id"]))


class RemixButton(_ResultButton, template=rf"videobot:remix:{_ID}"):
    action = "remix"

    def __init__(self, job_id: int, locale: str = "en") -> None:
        super().__init__(job_id, _format.BUTTON_REMIX, discord.ButtonStyle.secondary, "🎨", locale)

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RemixButton:
        return cls(int(match["job_id"]))


class ExtendButton(_ResultButton, template=rf"videobot:extend:{_ID}"):
    action = "extend"

    def __init__(self, job_id: int, locale: str = "en") -> None:
        super().__init__(job_id, _format.BUTTON_EXTEND, discord.ButtonStyle.secondary, "⏩", locale)

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ExtendButton:
        return cls(int(match["job_id"]))


class DeleteButton(_ResultButton, template=rf"videobot:delete:{_ID}"):
    action = "delete"

    def __init__(self, job_id: int, locale: str = "en") -> None:
        super().__init__(job_id, _format.BUTTON_DELETE, discord.ButtonStyle.danger, "🗑️", locale)

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> DeleteButton:
        return cls(int(match["job_id"]))


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    RerunButton,
    RemixButton,
    ExtendButton,
    DeleteButton,
)


def result_view(locale: str, job: Job, verbs: frozenset[str]) -> discord.ui.View:
    """The buttons for a posted result; those the model cannot serve are left out (Extend needs the
    ``extend`` verb). The view is stopped before it is sent, so discord.py keeps nothing per message:
    the registered dynamic items answer every click."""
    view = discord.ui.View(timeout=None)
    view.add_item(RerunButton(job.id, locale))
    view.add_item(RemixButton(job.id, locale))
    if "extend" in verbs:
        view.add_item(ExtendButton(job.id, locale))
    view.add_item(DeleteButton(job.id, locale))
    view.stop()
    return view
