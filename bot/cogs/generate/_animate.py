"""Apps → Animate: a video from a message's picture.

Animate's first response must be its form (``bot.ui.forms.animate_form``), so only quick checks run
before it: a supported picture on the message, its declared size, the channel rule within
``FORM_DEADLINE``. The form's submission (handled by its custom id, so it survives a restart) is
acknowledged like ``/video``, checks the channel again, reads the message again from Discord for a
fresh picture URL, and queues a job of kind ``animate`` whose status and result reply under the
picture.
"""

from __future__ import annotations

import asyncio
import logging

import discord

from bot.i18n import member_locale
from bot.ports import CommandHost
from bot.ui import forms
from videobot import planning
from videobot.health import record_ack
from videobot.i18n import msg
from videobot.images import ImageRejected
from videobot.jobs import Submitted

from . import _image
from ._requests import FORM_DEADLINE, Requests

log = logging.getLogger(__name__)


class Animate:
    """Opens the form, and queues from its submission."""

    def __init__(self, bot: CommandHost, requests: Requests) -> None:
        self.bot = bot
        self.requests = requests

    async def open_form(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Message command: ask for the motion in a form (which must be the first response, so only
        quick checks run before it), then queue from its submission (``submitted``)."""
        settings = self.bot.settings
        planning.check_image(settings)
        attachment = _image.pick_image(message)
        _image.check_declared_size(attachment, settings)
        assert interaction.guild_id is not None and interaction.channel_id is not None
        try:
            # The channel rule before the form, when the database answers in time (the submission
            # checks it again in every case).
            await asyncio.wait_for(
                self.requests.check_guild(
                    interaction.guild_id,
                    interaction.channel_id,
                    "",
                    interaction.channel,
                    int(interaction.filesize_limit),
                ),
                FORM_DEADLINE,
            )
        except TimeoutError:
            log.info(
                "Animate by %s: channel not checked before the form (slow database)", interaction.user.id
            )
        await interaction.response.send_modal(
            forms.animate_form(member_locale(interaction), message.id, attachment.id)
        )
        record_ack(interaction.created_at)

    async def submitted(
        self, interaction: discord.Interaction, message_id: int, attachment_id: int, prompt: str
    ) -> None:
        """The form's submission (also of a form opened before a restart): a new interaction, answered
        like ``/video image:`` (the channel rule, then the request recorded with its credit held before
        the "thinking…" and the download; a bot killed after that leaves it to the next one)."""
        settings = self.bot.settings
        recorded = asyncio.Event()

        async def queue() -> Submitted:
            target = planning.check_model(settings, None)
            planning.check_image(settings)
            await self.requests.check_before_download(interaction, prompt, verb="animate", cost=1)
            recorded.set()
            attachment = await self._form_picture(interaction, message_id, attachment_id)
            picture = await self.requests.read_image(attachment)
            params = planning.build_params(target, prompt, image=picture)
            return await self.requests.submit(
                interaction,
                target,
                params,
                kind="animate",
                picture=picture,
                reply_to_message_id=message_id,
                intake=True,
            )

        await self.requests.answer(interaction, queue(), recorded=recorded, eager=True)

    async def _form_picture(
        self, interaction: discord.Interaction, message_id: int, attachment_id: int
    ) -> discord.Attachment:
        """The picture the Animate form was opened on, read again from Discord (a fresh CDN URL)."""
        assert interaction.channel_id is not None
        channel = self.bot.get_partial_messageable(interaction.channel_id, guild_id=interaction.guild_id)
        try:
            message = await channel.fetch_message(message_id)
        except discord.HTTPException as exc:
            log.info(
                "Animate by %s: message %s could not be read (%s/%s)",
                interaction.user.id,
                message_id,
                exc.status,
                exc.code,
            )
            raise ImageRejected(msg(_image.NOT_DOWNLOADED)) from None
        for attachment in message.attachments:
            if attachment.id == attachment_id:
                return attachment
        raise ImageRejected(msg(_image.NOT_DOWNLOADED))  # removed from the message meanwhile
