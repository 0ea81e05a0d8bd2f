"""The command tree's one error handler: typed refusals to their message, anything else to a reference id.

Every answer is ephemeral, in the member's language, says why and what to do, and never carries a
traceback or a path. An
unexpected error is logged with its traceback and a short reference id that the user also sees,
so an owner can find the log line from a screenshot.
"""

from __future__ import annotations

import logging
import secrets

import discord
from discord import app_commands
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bot.i18n import member_locale
from videobot.errors import ServiceUnavailable, VideobotError
from videobot.i18n import N_, Duration, t

log = logging.getLogger(__name__)

UNEXPECTED = N_("Something went wrong on our side (ref {ref}). Please try again later.")
UNAVAILABLE = N_(
    "The video service can't reach its database right now (ref {ref}). Nothing was charged; "
    "please try again in a minute."
)
CHECK_FAILED = N_("You can't use this command here.")
NO_PERMISSION = N_("You don't have permission to use this command.")
COOLDOWN = N_("Slow down a little: try again in {wait}.")
NO_DIRECT_MESSAGES = N_("This command works in a server channel, not in direct messages.")
_DB_ERRORS = (DBAPIError, OperationalError, PoolTimeout, ConnectionError, OSError)


def new_ref() -> str:
    return secrets.token_hex(3).upper()


def what_was_used(interaction: discord.Interaction) -> str:
    """For log lines: ``/video``, or a button's or form's custom id (``videobot:rerun:12``: ids only)."""
    if interaction.command is not None:
        return f"/{interaction.command.qualified_name}"
    custom_id = (interaction.data or {}).get("custom_id")
    return str(custom_id)[:100] if custom_id else "?"


def user_message(interaction: discord.Interaction, error: BaseException) -> str:
    """The ephemeral text for ``error`` in the member's language (logging the unexpected ones with a reference id)."""
    locale = member_locale(interaction)
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    command = what_was_used(interaction)
    if isinstance(original, VideobotError) and not isinstance(original, ServiceUnavailable):
        log.info("%s by %s refused: %s", command, interaction.user.id, original.code)
        return original.render(locale)
    if isinstance(
        original, app_commands.MissingPermissions | app_commands.MissingRole | app_commands.MissingAnyRole
    ):
        return t(locale, NO_PERMISSION)
    if isinstance(original, app_commands.CommandOnCooldown):
        return t(locale, COOLDOWN, wait=Duration(max(1.0, original.retry_after)))
    if isinstance(original, app_commands.NoPrivateMessage):
        return t(locale, NO_DIRECT_MESSAGES)
    if isinstance(original, app_commands.CheckFailure):
        return original.render(locale) if isinstance(original, VideobotError) else t(locale, CHECK_FAILED)
    ref = new_ref()
    if isinstance(original, (ServiceUnavailable, *_DB_ERRORS)):
        log.error(
            "%s by %s: database unavailable (ref %s)", command, interaction.user.id, ref, exc_info=original
        )
        return t(locale, UNAVAILABLE, ref=ref)
    log.error("%s by %s failed (ref %s)", command, interaction.user.id, ref, exc_info=original)
    return t(locale, UNEXPECTED, ref=ref)


async def on_app_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """``tree.on_error``: answer ephemerally whether or not the interaction was already acknowledged."""
    try:
        text = user_message(interaction, error)
    except Exception:  # never let the error handler itself fail silently
        ref = new_ref()
        log.exception("error handler failed (ref %s) for %r", ref, error)
        text = t(member_locale(interaction), UNEXPECTED, ref=ref)
    try:
        if interaction.type is discord.InteractionType.autocomplete:
            return
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True)
        elif interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
            # Our commands defer ephemerally: the "thinking…" message becomes the answer.
            await interaction.edit_original_response(
                content=text, allowed_mentions=discord.AllowedMentions.none()
            )
        else:
            await interaction.followup.send(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
    except discord.HTTPException as exc:
        log.warning(
            "could not tell %s about an error in interaction %s (%s/%s)",
            interaction.user.id,
            interaction.id,
            exc.status,
            exc.code,
        )


def install(tree: app_commands.CommandTree) -> None:
    tree.on_error = on_app_command_error  # type: ignore[method-assign]
