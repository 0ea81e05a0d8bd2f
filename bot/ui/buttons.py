"""The buttons under every posted result (Rerun, Remix, Extend, HD, Delete) and on a job's status message
(Cancel).

Their labels are in the language of the message they sit on (the server's: ``locale``); the emoji
(🔁 🎨 ⏩ ✨ 🗑️ 🛑) is the same in every language. A click is answered in the clicking member's own
language whatever the labels say.

Each is a ``DynamicItem`` whose custom id carries the job id (``videobot:rerun:<job_id>``), registered
once with ``bot.add_dynamic_items``: a click on any message ever posted is answered, after any restart,
for any member, with no per-message state in memory. A click is dispatched as the client event
``CLICK_EVENT`` (``on_videobot_click(interaction, action, job_id)``): what it does lives with the
commands (``bot.cogs.generate``), which listen for it; this module knows none of them.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import discord

from bot.ui import texts
from videobot.models import Job

#: The client event a click becomes: listeners get ``(interaction, action, job_id)``.
CLICK_EVENT = "videobot_click"
_ID = r"(?P<job_id>[0-9]{1,20})"
Button = discord.ui.Button[Any]


class JobButton(discord.ui.DynamicItem[Button], template=rf"videobot:[a-z]+:{_ID}"):
    """A button about one job (never registered itself: the classes below are); ``action`` is what a
    click asks for, the custom id's middle part."""

    action: ClassVar[str] = ""
    label: ClassVar[str] = ""
    emoji: ClassVar[str] = ""
    style: ClassVar[discord.ButtonStyle] = discord.ButtonStyle.secondary

    def __init__(self, job_id: int, locale: str = "en") -> None:
        super().__init__(
            discord.ui.Button(
                label=texts.label(locale, self.label, texts.MAX_BUTTON_LABEL),
                style=self.style,
                emoji=self.emoji,
                custom_id=f"videobot:{self.action}:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        return cls(int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        interaction.client.dispatch(CLICK_EVENT, interaction, self.action, self.job_id)


class RerunButton(JobButton, template=rf"videobot:rerun:{_ID}"):
    action, label, emoji = "rerun", texts.BUTTON_RERUN, texts.RERUN_EMOJI


class RemixButton(JobButton, template=rf"videobot:remix:{_ID}"):
    action, label, emoji = "remix", texts.BUTTON_REMIX, "🎨"


class ExtendButton(JobButton, template=rf"videobot:extend:{_ID}"):
    action, label, emoji = "extend", texts.BUTTON_EXTEND, "⏩"


class HdButton(JobButton, template=rf"videobot:hd:{_ID}"):
    """✨ HD: the same video at twice the width and height, posted as a reply to it."""

    action, label, emoji = "hd", texts.BUTTON_HD, "✨"


class DeleteButton(JobButton, template=rf"videobot:delete:{_ID}"):
    action, label, emoji, style = "delete", texts.BUTTON_DELETE, "🗑️", discord.ButtonStyle.danger


class CancelButton(JobButton, template=rf"videobot:cancel:{_ID}"):
    """🛑 Cancel on a status message, for the requester and moderators."""

    action, label, emoji = "cancel", texts.CANCEL, "🛑"


#: The client event a click on a review button becomes: ``(interaction, action, job_id)``; the review
#: cog (``bot.cogs.review``) listens, the result clicks do not see it.
REVIEW_EVENT = "videobot_review"


class ReviewButton(JobButton, template=rf"videobot:review-[a-z]+:{_ID}"):
    """A moderator's decision on a held result (in the review channel)."""

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        interaction.client.dispatch(REVIEW_EVENT, interaction, self.action, self.job_id)


class ApproveButton(ReviewButton, template=rf"videobot:review-approve:{_ID}"):
    action, label, emoji, style = "review-approve", texts.BUTTON_APPROVE, "✅", discord.ButtonStyle.success


class RejectButton(ReviewButton, template=rf"videobot:review-reject:{_ID}"):
    action, label, emoji, style = "review-reject", texts.BUTTON_REJECT, "🗑️", discord.ButtonStyle.danger


#: The review post's buttons.
REVIEW_ITEMS: tuple[type[JobButton], ...] = (ApproveButton, RejectButton)


def review_view(job_id: int, locale: str = "en") -> discord.ui.View:
    """Approve and Reject under a held result in the review channel (answered after any restart)."""
    view = discord.ui.View(timeout=None)
    view.add_item(ApproveButton(job_id, locale))
    view.add_item(RejectButton(job_id, locale))
    view.stop()
    return view


#: The result's buttons.
DYNAMIC_ITEMS: tuple[type[JobButton], ...] = (RerunButton, RemixButton, ExtendButton, HdButton, DeleteButton)
#: Every button a click on any message the bot ever posted can come from.
ALL_ITEMS: tuple[type[JobButton], ...] = (*DYNAMIC_ITEMS, CancelButton)


def result_view(locale: str, job: Job, verbs: frozenset[str]) -> discord.ui.View:
    """The buttons for a posted result; those the model cannot serve are left out (Extend needs the
    ``extend`` verb, HD the ``hd`` verb and a result that can be made in HD: ``texts.can_be_hd``). The view is stopped before it is sent, so discord.py keeps nothing per message:
    the registered dynamic items answer every click."""
    view = discord.ui.View(timeout=None)
    view.add_item(RerunButton(job.id, locale))
    view.add_item(RemixButton(job.id, locale))
    if "extend" in verbs:
        view.add_item(ExtendButton(job.id, locale))
    if "hd" in verbs and texts.can_be_hd(job):
        view.add_item(HdButton(job.id, locale))
    view.add_item(DeleteButton(job.id, locale))
    view.stop()
    return view


def cancel_view(job_id: int, locale: str = "en") -> discord.ui.View:
    """The status message's components: the Cancel button, in the server's language (``locale``)."""
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id, locale))
    return view
