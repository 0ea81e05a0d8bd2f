"""Form submissions (``bot.ui.forms``): Remix and Extend queue a new job from a posted result, Animate
from a message's picture (``_animate``). Handled from the raw interaction by the form's custom id, so a
form opened before a restart is answered after it. Each submission is a new interaction, acknowledged
first (ephemeral); every refusal is private and says why.
"""

from __future__ import annotations

import discord

from bot import errors as bot_errors
from bot.ports import CommandHost
from bot.ui import forms

from ._actions import ResultActions, asker_from
from ._animate import Animate
from ._requests import Requests


class Forms:
    """Routes a submitted form to what it asks for (the cog owns one)."""

    def __init__(
        self, bot: CommandHost, requests: Requests, actions: ResultActions, animate: Animate
    ) -> None:
        self.bot = bot
        self.requests = requests
        self.actions = actions
        self.animate = animate

    async def on_submit(self, interaction: discord.Interaction) -> None:
        """A Remix, Extend or Animate form submitted (also one opened before a restart)."""
        if interaction.type is not discord.InteractionType.modal_submit or interaction.guild_id is None:
            return
        data: dict[str, object] = dict(interaction.data or {})  # type: ignore[arg-type]
        custom_id = str(data.get("custom_id") or "")
        if animate := forms.ANIMATE_FORM_ID.fullmatch(custom_id):
            try:
                prompt = forms.submitted_values(data).get(forms.PROMPT_ID, "")  # type: ignore[arg-type]
                await self.animate.submitted(
                    interaction, int(animate["message_id"]), int(animate["attachment_id"]), prompt
                )
            except Exception as exc:
                await bot_errors.on_app_command_error(interaction, exc)  # type: ignore[arg-type]
            return
        match = forms.FORM_ID.fullmatch(custom_id)
        if match is None:
            return
        kind, job_id = match["kind"], int(match["job_id"])
        async with self.requests.answered_later(interaction, kind):
            values = forms.submitted_values(data)  # type: ignore[arg-type]
            if interaction.message is not None:
                message_id: int | None = interaction.message.id
            else:  # the form was opened from a message Discord did not send back: reply to the result
                source = await self.bot.queue.get(job_id)
                message_id = source.result_message_id if source is not None else None
            submitted, source_job = await self.actions.submit(
                asker_from(interaction, message_id),
                job_id,
                kind,
                idempotency_key=f"interaction:{interaction.id}",
                prompt=values.get(forms.PROMPT_ID, ""),
                negative_prompt=values.get("negative_prompt", "") if kind == "remix" else None,
            )
            videos = int((source_job.params or {}).get("num_videos") or 1)
            await self.requests.reply_queued(
                interaction, submitted, first_of=videos if kind == "extend" else 0
            )
