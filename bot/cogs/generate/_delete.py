"""Deleting a posted video: the Delete button and the ❌ reaction, one path with one set of rules.

The job (from the button's custom id, or the result the reaction is on) authorises the delete, so the
message must be that job's: its result (or a copy of it) or its status message, never some other
message a button ended up on. Only the requester or a moderator may delete. The stored file goes with
the result message (not with a copy or the status message), and only once the message is gone: when
Discord refuses (403) the member is told and the file stays while the message is still there.
"""

from __future__ import annotations

import logging

import aiohttp
import discord

from bot.checks import is_moderator
from bot.ports import CommandHost
from bot.ui import texts
from videobot.errors import NotModerator
from videobot.i18n import msg
from videobot.models import Job

from ._actions import CannotDelete, NotThisResult, Posted

log = logging.getLogger(__name__)


class Deleter:
    """Deletes a job's message for a member (the cog owns one)."""

    def __init__(self, bot: CommandHost) -> None:
        self.bot = bot

    async def delete(
        self,
        job: Job | None,
        *,
        job_id: int,
        guild_id: int,
        channel_id: int,
        message: Posted,
        user_id: int,
        member: discord.Interaction | discord.Member | None,
        reason: str,
    ) -> None:
        """Delete ``message`` for ``user_id`` (``member``: who asks, for the moderator check); raises
        ``NotThisResult``, ``NotModerator`` or ``CannotDelete`` with nothing deleted."""
        me = self.bot.user
        bot_id = me.id if me else None
        if (
            job is None
            or job.guild_id != guild_id
            or (
                message.id not in (job.result_message_id, job.status_message_id)
                and not message.carries(job, bot_id)
            )
        ):
            log.warning(
                "job %s: delete by %s refused: message %s is not its result or status message",
                job_id,
                user_id,
                message.id,
            )
            raise NotThisResult(msg(texts.DELETE_MISMATCH))
        if job.user_id != user_id and not await is_moderator(self.bot, member):
            log.info("job %s: delete by %s refused (not the requester or a moderator)", job_id, user_id)
            raise NotModerator(msg(texts.DELETE_REFUSED))
        # The stored file goes with the result message (not with a copy or the status message).
        is_result = message.shows(job, bot_id)
        try:
            await self.bot.http.delete_message(channel_id, message.id, reason=reason)
        except discord.NotFound:
            pass  # already gone: the member's wish is granted
        except discord.Forbidden as exc:
            log.warning(
                "job %s: could not delete message %s for %s (%s/%s)",
                job_id,
                message.id,
                user_id,
                exc.status,
                exc.code,
            )
            # The stored file goes only with the message: keep it while the message is still there.
            if is_result and not await self._still_there(channel_id, message.id):
                await self.bot.queue.forget_result(job.id)
            raise CannotDelete(msg(texts.DELETE_FORBIDDEN)) from None
        if is_result:
            await self.bot.queue.forget_result(job.id)
        log.info("job %s: message %s deleted by %s", job_id, message.id, user_id)

    async def _still_there(self, channel_id: int, message_id: int) -> bool:
        """Whether a message exists (a 404 says it does not; anything else: assume it does)."""
        try:
            await self.bot.http.get_message(channel_id, message_id)
        except discord.NotFound:
            return False
        except (discord.HTTPException, aiohttp.ClientError, OSError):  # TimeoutError is an OSError
            return True
        return True
