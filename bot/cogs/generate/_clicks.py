"""Clicks on the buttons of the bot's messages (``bot.ui.buttons``): Rerun, Remix, Extend, HD and Delete
on a result, Cancel on a status message. Every refusal is ephemeral and says why.

Rerun, HD, Delete and Cancel record their intake, then defer (ephemeral), like ``/video``
(``Requests.answered_later``). Remix and Extend must answer with
their form, and a form can only be the first response, so they read the source job (and check the
member's credits) first, within ``FORM_DEADLINE`` of Discord's 3 s; a database too slow for that gets
a "busy, click again" note instead of a late, failed answer. The form's submission is a new
interaction (``_forms``).
"""

from __future__ import annotations

import asyncio
import logging

import discord

from bot import errors as bot_errors
from bot.i18n import member_locale
from bot.ports import CommandHost
from bot.ui import forms, texts
from videobot.health import record_ack
from videobot.i18n import t
from videobot.models import Job

from ._actions import Posted, ResultActions, asker_from
from ._cancel import cancel_click
from ._delete import Deleter
from ._requests import FORM_DEADLINE, Requests

log = logging.getLogger(__name__)


class Clicks:
    """What a click does, by the button's action (the cog owns one)."""

    def __init__(
        self, bot: CommandHost, requests: Requests, actions: ResultActions, deleter: Deleter
    ) -> None:
        self.bot = bot
        self.requests = requests
        self.actions = actions
        self.deleter = deleter

    async def on_click(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        """A click (``bot.ui.buttons.CLICK_EVENT``); a refusal goes to the error handler (ephemeral)."""
        if action == "cancel":
            async with self.requests.answered_later(interaction, "cancel"):
                await cancel_click(self.bot, interaction, job_id)
            return
        if interaction.guild_id is None or interaction.message is None:
            return
        if action in ("remix", "extend"):
            try:
                await self._open_form(interaction, action, job_id)
            except Exception as exc:
                await bot_errors.on_app_command_error(interaction, exc)  # type: ignore[arg-type]
            return
        # Recorded, then "thinking…": a bot killed before the answer leaves it to the next one.
        async with self.requests.answered_later(interaction, action):
            if action in ("rerun", "hd"):
                await self._rerun(interaction, job_id, action)
            elif action == "delete":
                await self._delete(interaction, job_id)

    async def _rerun(self, interaction: discord.Interaction, job_id: int, kind: str) -> None:
        """Rerun, or HD (the same video at twice the size; of a result with variations, its first)."""
        assert interaction.message is not None
        submitted, source = await self.actions.submit(
            asker_from(interaction, interaction.message.id),
            job_id,
            kind,
            idempotency_key=f"interaction:{interaction.id}",
        )
        first_of = texts.wanted_videos(source) if kind == "hd" else 0
        await self.requests.reply_queued(interaction, submitted, first_of=first_of)

    async def _open_form(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        assert interaction.message is not None
        asker = asker_from(interaction, interaction.message.id)

        async def prepare() -> Job:
            job = await self.actions.source(job_id, asker.guild_id, action, asker.posted)
            await self.actions.precheck(asker, job, action)
            return job

        try:
            job = await asyncio.wait_for(prepare(), FORM_DEADLINE)
        except TimeoutError:
            log.warning(
                "job %s: %s form not opened for %s: the database was too slow", job_id, action, asker.user_id
            )
            await interaction.response.send_message(t(member_locale(interaction), texts.BUSY), ephemeral=True)
            return
        params = job.params or {}
        prompt = str(params.get("prompt") or "")
        locale = member_locale(interaction)
        if action == "remix":
            form = forms.remix_form(locale, job.id, prompt, str(params.get("negative_prompt") or ""))
        else:
            form = forms.extend_form(locale, job.id, prompt)
        await interaction.response.send_modal(form)
        record_ack(interaction.created_at)

    async def _delete(self, interaction: discord.Interaction, job_id: int) -> None:
        assert interaction.message is not None and interaction.channel_id is not None
        assert interaction.guild_id is not None
        await self.deleter.delete(
            await self.bot.queue.get(job_id),
            job_id=job_id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            message=Posted.of(interaction.message),
            user_id=interaction.user.id,
            member=interaction,
            reason=f"Delete by {interaction.user.id}",
        )
        await interaction.edit_original_response(
            content=t(member_locale(interaction), texts.DELETED, job=job_id)
        )
