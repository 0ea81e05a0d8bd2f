"""Which language the bot speaks to whom, and the command tree's translator.

* Ephemeral replies (only the member sees them): the member's client language, ``interaction.locale``.
* Public messages (status, progress, results, notices in a channel): the server's language — the
  moderators' choice in ``/videoconfig language`` if any, else the server's preferred locale in
  Discord (``guild_locale`` in an interaction, ``Guild.preferred_locale`` from the gateway when no
  interaction is at hand), else English.
* Command, option and choice descriptions: ``CatalogTranslator`` gives discord.py the
  ``description_localizations`` / ``name_localizations`` for every Discord locale a catalog serves.

The texts themselves live in ``videobot.i18n`` (catalogs, ``t``, formats).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Protocol

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where

from bot.ports import HasDatabase
from videobot import guilds, i18n

log = logging.getLogger(__name__)

#: Discord's limits on localized texts (the same as on the source texts).
MAX_DESCRIPTION = 100
MAX_CHOICE_NAME = 100
#: How long a server's configured language is trusted before it is read again (a moderator's
#: change through this bot updates it at once; this bounds changes made some other way).
LANGUAGE_CACHE_SECONDS = 60.0


class HasGuilds(HasDatabase, Protocol):
    """The database and Discord's guild cache (the client)."""

    def get_guild(self, guild_id: int, /) -> discord.Guild | None: ...


def member_locale(interaction: discord.Interaction) -> str:
    """The locale for an ephemeral reply: the member's client language (English when unknown)."""
    return str(getattr(interaction.locale, "value", interaction.locale) or i18n.SOURCE)


def user_mention(user_id: int) -> str:
    return f"<@{user_id}>"


def role_mention(role_id: int) -> str:
    return f"<@&{role_id}>"


def channel_mention(channel_id: int) -> str:
    return f"<#{channel_id}>"


class GuildLanguages:
    """The language of each server's public messages, with a short-lived cache of the configured one."""

    def __init__(self, bot: HasGuilds) -> None:
        self.bot = bot
        self._configured: dict[int, tuple[float, str | None]] = {}

    def forget(self, guild_id: int) -> None:
        """Drop the cached setting (after ``/videoconfig language``)."""
        self._configured.pop(guild_id, None)

    def remember(self, guild_id: int, language: str | None) -> None:
        self._configured[guild_id] = (time.monotonic(), language)

    async def configured(self, guild_id: int) -> str | None:
        """The ``/videoconfig language`` choice, or None (follow Discord's preferred locale)."""
        hit = self._configured.get(guild_id)
        if hit is not None and time.monotonic() - hit[0] < LANGUAGE_CACHE_SECONDS:
            return hit[1]
        async with self.bot.db.sessionmaker() as session:
            view = await guilds.get_config(session, guild_id)
        self.remember(guild_id, view.language)
        return view.language

    def discord_locale(self, guild_id: int, interaction: discord.Interaction | None = None) -> str | None:
        """The server's preferred locale as Discord reports it (interaction first, then the gateway cache)."""
        if interaction is not None and interaction.guild_locale is not None:
            return str(interaction.guild_locale.value)
        guild = self.bot.get_guild(guild_id)
        if guild is not None and guild.preferred_locale is not None:
            return str(guild.preferred_locale.value)
        return None

    async def locale(self, guild_id: int | None, interaction: discord.Interaction | None = None) -> str:
        """The locale for a public message in ``guild_id``: configured, else Discord's, else English."""
        if guild_id is None:
            return member_locale(interaction) if interaction is not None else i18n.SOURCE
        configured = await self.configured(guild_id)
        if configured:
            return configured
        return self.discord_locale(guild_id, interaction) or i18n.SOURCE


#: Discord's rule for command and option names: lower case letters (any script), digits, - and _.
OPTION_NAME_RULE = re.compile(r"[-_\w]{1,32}")


class CatalogTranslator(app_commands.Translator):
    """Descriptions, choice names and option names from the catalogs, for every Discord locale they serve.

    Option names (``prompt``, ``job``) are shown in the member's language (``/cancel lavoro:``); the
    catalogs' texts that name an option use the same word. Command and subcommand names stay as
    they are (``/video``, ``/videoconfig block-add``): they are the product's words, typed and
    quoted the same way in every language.
    """

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        if context.location is Where.parameter_name:
            name = i18n.lookup(locale.value, string.message, i18n.OPTION_NAME)
            if name is not None and (not OPTION_NAME_RULE.fullmatch(name) or name != name.lower()):
                log.error(
                    "the %s option name %r for %r breaks Discord's rule; not used", locale, name, string
                )
                return None
            return name
        if context.location not in (
            Where.command_description,
            Where.group_description,
            Where.parameter_description,
            Where.choice_name,
        ):
            return None
        text = i18n.lookup(locale.value, string.message)
        if text is None:
            return None
        limit = MAX_CHOICE_NAME if context.location is Where.choice_name else MAX_DESCRIPTION
        if len(text) > limit:
            # Discord would refuse the whole sync: keep the English text for this one.
            log.error(
                "the %s translation of %r is longer than %d characters; not used", locale, string, limit
            )
            return None
        return text
