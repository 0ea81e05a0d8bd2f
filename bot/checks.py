"""Who may use the moderator commands: Manage Server, or the guild's configured moderator role.

Checked at run time on every use: a command's ``default_member_permissions`` is only a default
that a server's admins can override in Server Settings → Integrations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

import discord
from discord import app_commands

from bot.ports import HasDatabase
from videobot import guilds
from videobot.errors import NotModerator
from videobot.health import record_ack
from videobot.i18n import N_, msg

log = logging.getLogger(__name__)

T = TypeVar("T")

QUOTA_REFUSAL = N_("Only moderators (Manage Server or the moderator role) can change quotas.")
CONFIG_REFUSAL = N_(
    "Only moderators (Manage Server or the moderator role) can change this server's video settings."
)


class NotModeratorFailure(app_commands.CheckFailure, NotModerator):
    """A moderator command used by someone else; ``render(locale)`` is the polite refusal.

    Both a ``CheckFailure`` (what ``app_commands.check`` raises) and a ``VideobotError`` (whose
    message the error handler renders in the member's language), so either branch of the handler
    says the same thing. ``message`` is one of the ``*_REFUSAL`` messages (English ids).
    """

    def __init__(self, message: str = QUOTA_REFUSAL) -> None:
        NotModerator.__init__(self, msg(message))


def role_ids(member: discord.Member) -> list[int]:
    """The ids of a member's roles, as Discord sent them.

    ``Member.roles`` drops roles missing from the guild cache (an interaction from a guild that is
    not cached, a role created a moment ago), so read the raw id list the payload carried.
    """
    raw: Iterable[int] | None = getattr(member, "_roles", None)
    if raw is not None:
        return [int(r) for r in raw]
    return [r.id for r in member.roles]


def age_restricted(channel: object) -> bool | None:
    """Whether Discord marks a channel age-restricted (``nsfw``); a thread inherits its parent's
    (discord.py's ``Thread.is_nsfw``). None: unknown (no channel object, e.g. not cached)."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else None


def channel_is_age_restricted(interaction: discord.Interaction) -> bool:
    """The interaction's channel is age-restricted (the interaction carries the channel; unknown: no)."""
    return bool(age_restricted(interaction.channel))


async def is_moderator(bot: HasDatabase, subject: discord.Interaction | discord.Member | None) -> bool:
    """True if the member has Manage Server (or Administrator) or the guild's moderator role.

    ``subject`` is an interaction, or a member such as ``RawReactionActionEvent.member`` (None when
    Discord sent no member or the guild is not cached: not a moderator).
    """
    if subject is None:
        return False
    if isinstance(subject, discord.Interaction):
        guild_id = subject.guild_id
        member = subject.user
        # Discord's own computation for this member in this channel (owner and Administrator: all).
        perms = subject.permissions
    else:
        member = subject
        guild_id = subject.guild.id
        # Computed from the cached guild's roles; owner and Administrator get everything.
        perms = subject.guild_permissions
    if guild_id is None or not isinstance(member, discord.Member):
        return False
    if perms.administrator or perms.manage_guild:
        return True
    ids = role_ids(member)
    if not ids:
        return False
    async with bot.db.sessionmaker() as session:
        view = await guilds.get_config(session, guild_id)
    return view.moderator_role_id is not None and view.moderator_role_id in ids


async def ack(interaction: discord.Interaction) -> None:
    """Acknowledge with an ephemeral "thinking…" unless that was done already."""
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=True, thinking=True)
        record_ack(interaction.created_at)


def moderator_only(message: str = QUOTA_REFUSAL) -> Callable[[T], T]:
    """An ``app_commands.check`` that refuses non-moderators with ``NotModeratorFailure(message)``.

    A member without Manage Server needs a database read (the moderator role), so the interaction
    is acknowledged first (ephemeral) to stay inside Discord's 3 s; the refusal is then a follow-up.
    """

    async def predicate(interaction: discord.Interaction) -> bool:
        perms = interaction.permissions
        if interaction.guild_id is not None and (perms.administrator or perms.manage_guild):
            return True
        await ack(interaction)
        if await is_moderator(interaction.client, interaction):  # type: ignore[arg-type]
            return True
        log.info(
            "moderator command /%s refused for user %s in guild %s",
            interaction.command.qualified_name if interaction.command else "?",
            interaction.user.id,
            interaction.guild_id,
        )
        raise NotModeratorFailure(message)

    return app_commands.check(predicate)
