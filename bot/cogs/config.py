"""``/videoconfig``: moderators set the server's default quota, role limits, channels, blocklist, moderator role."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import CONFIG_REFUSAL, ack, moderator_only
from bot.cogs.quota import Limit, Reason
from videobot import guilds, quota
from videobot.guilds import MAX_PATTERN_CHARS

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
MESSAGE_LIMIT = 2000
Pattern = app_commands.Range[str, 1, MAX_PATTERN_CHARS]


class ChannelOption(app_commands.Transformer):
    """A channel where a /video can be typed: text, announcement, voice and stage chats, forums, threads.

    Categories are left out (nothing is typed in one), and so are media channels: Discord's
    published API description does not list their type for command options yet.
    """

    @property
    def type(self) -> discord.AppCommandOptionType:
        return discord.AppCommandOptionType.channel

    @property
    def channel_types(self) -> list[discord.ChannelType]:
        t = discord.ChannelType
        return [
            t.text,
            t.news,
            t.voice,
            t.stage_voice,
            t.forum,
            t.public_thread,
            t.private_thread,
            t.news_thread,
        ]

    async def transform(
        self, interaction: discord.Interaction, value: Any, /
    ) -> app_commands.AppCommandChannel | app_commands.AppCommandThread:
        # discord.py has already built it from the interaction's resolved data (no cache needed).
        return value


Channel = app_commands.Transform[
    app_commands.AppCommandChannel | app_commands.AppCommandThread, ChannelOption
]


def code(text: str) -> str:
    """``text`` as inline code that survives backticks in it (for blocklist entries)."""
    if "`" not in text:
        return f"`{text}`"
    safe = text.replace("``", "`\u200b`")
    return f"`` {safe} ``"


def reason_line(reason: str | None) -> str:
    return f"\nReason: {reason}" if reason else ""


def format_config(
    view: guilds.GuildSettingsView, role_limits: list[tuple[int, int]], *, setting_default: int
) -> str:
    """The ``/videoconfig show`` reply, kept under Discord's 2,000 characters."""
    default = (
        f"{view.default_limit} per member"
        if view.default_limit is not None
        else f"{setting_default} (the bot's default)"
    )
    lines = ["**Video settings for this server**", f"Default quota: {default}"]
    if role_limits:
        lines.append(
            "Role limits (the highest applies): " + ", ".join(f"<@&{r}> {n}" for r, n in role_limits)
        )
    else:
        lines.append("Role limits: none")
    if view.allowed_channel_ids:
        lines.append("/video allowed in: " + ", ".join(f"<#{c}>" for c in view.allowed_channel_ids))
    else:
        lines.append("/video allowed in: every channel")
    lines.append(
        "Moderator role: "
        + (f"<@&{view.moderator_role_id}>" if view.moderator_role_id else "none (Manage Server only)")
    )
    lines.append(f"Blocklist: {len(view.blocklist)} entr{'y' if len(view.blocklist) == 1 else 'ies'}")
    text = "\n".join(lines)
    for i, entry in enumerate(view.blocklist):
        line = f"\n- {code(entry)}"
        more = f"\n… and {len(view.blocklist) - i} more"
        if len(text) + len(line) + len(more) > MESSAGE_LIMIT:
            return text + more
        text += line
    return text


class ConfigCog(commands.Cog):
    """Thin layer over ``videobot.guilds`` and ``videobot.quota``."""

    # Hidden from non-moderators by default (admins may change that in Server Settings ->
    # Integrations, which is why every command also checks at run time).
    videoconfig = app_commands.Group(
        name="videoconfig",
        description="Moderators: video settings for this server",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        # The bot class (bot/app.py) carries ``settings`` and ``db``.
        self.app: Any = bot

    async def _reply(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS)

    @videoconfig.command(name="show", description="Show this server's video settings")
    @moderator_only(CONFIG_REFUSAL)
    async def show(self, interaction: discord.Interaction) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            view = await guilds.get_config(s, interaction.guild_id)
            limits = await guilds.role_limits(s, interaction.guild_id)
        await self._reply(
            interaction, format_config(view, limits, setting_default=self.app.settings.default_quota)
        )

    @videoconfig.command(name="default-quota", description="Set how many videos a member may make per window")
    @app_commands.describe(
        limit="Videos per member per window; leave empty to go back to the bot's default",
        reason="Why (kept in the audit log)",
    )
    @moderator_only(CONFIG_REFUSAL)
    async def default_quota(
        self, interaction: discord.Interaction, limit: Limit | None = None, reason: Reason | None = None
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            await quota.set_guild_default(
                s, interaction.guild_id, limit, actor_id=interaction.user.id, reason=reason
            )
        log.info("guild %s default quota -> %s by %s", interaction.guild_id, limit, interaction.user.id)
        if limit is None:
            text = f"The default quota is back to the bot's default ({self.app.settings.default_quota})."
        else:
            text = f"The default quota is now **{limit}** video(s) per member."
        await self._reply(interaction, text + reason_line(reason))

    @videoconfig.command(name="role-limit", description="Give members with a role a different limit")
    @app_commands.describe(
        role="The role",
        limit="Videos per window for this role; leave empty to remove the role's limit",
        reason="Why (kept in the audit log)",
    )
    @moderator_only(CONFIG_REFUSAL)
    async def role_limit(
        self,
        interaction: discord.Interaction,
        role: discord.Role,
        limit: Limit | None = None,
        reason: Reason | None = None,
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            await quota.set_role_limit(
                s, interaction.guild_id, role.id, limit, actor_id=interaction.user.id, reason=reason
            )
        log.info(
            "guild %s role %s limit -> %s by %s", interaction.guild_id, role.id, limit, interaction.user.id
        )
        if limit is None:
            text = f"<@&{role.id}> no longer has its own limit."
        else:
            text = f"Members with <@&{role.id}> may make **{limit}** video(s) per window (the highest role limit applies)."
        await self._reply(interaction, text + reason_line(reason))

    @videoconfig.command(
        name="channel-allow", description="Allow /video in a channel (once any is set, only those)"
    )
    @app_commands.describe(channel="The channel", reason="Why (kept in the audit log)")
    @moderator_only(CONFIG_REFUSAL)
    async def channel_allow(
        self, interaction: discord.Interaction, channel: Channel, reason: Reason | None = None
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            added = await guilds.add_allowed_channel(
                s, interaction.guild_id, channel.id, actor_id=interaction.user.id, reason=reason
            )
            view = await guilds.get_config(s, interaction.guild_id)
        where = ", ".join(f"<#{c}>" for c in view.allowed_channel_ids)
        first = "was already allowed" if not added else "is now allowed"
        await self._reply(
            interaction, f"<#{channel.id}> {first}. /video works in: {where}.{reason_line(reason)}"
        )

    @videoconfig.command(name="channel-remove", description="Stop allowing /video in a channel")
    @app_commands.describe(channel="The channel", reason="Why (kept in the audit log)")
    @moderator_only(CONFIG_REFUSAL)
    async def channel_remove(
        self, interaction: discord.Interaction, channel: Channel, reason: Reason | None = None
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            removed = await guilds.remove_allowed_channel(
                s, interaction.guild_id, channel.id, actor_id=interaction.user.id, reason=reason
            )
            view = await guilds.get_config(s, interaction.guild_id)
        if not removed:
            text = f"<#{channel.id}> was not on the list."
        elif view.allowed_channel_ids:
            text = (
                f"<#{channel.id}> removed. /video works in: "
                + ", ".join(f"<#{c}>" for c in view.allowed_channel_ids)
                + "."
            )
        else:
            text = (
                f"<#{channel.id}> removed. No channels are listed any more, so /video works in every channel."
            )
        await self._reply(interaction, text + reason_line(reason))

    @videoconfig.command(name="channel-clear", description="Allow /video in every channel again")
    @app_commands.describe(reason="Why (kept in the audit log)")
    @moderator_only(CONFIG_REFUSAL)
    async def channel_clear(self, interaction: discord.Interaction, reason: Reason | None = None) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            await guilds.set_allowed_channels(
                s, interaction.guild_id, [], actor_id=interaction.user.id, reason=reason
            )
        await self._reply(interaction, "/video works in every channel again." + reason_line(reason))

    @videoconfig.command(
        name="block-add", description="Refuse prompts with a word (or re:<regular expression>)"
    )
    @app_commands.describe(
        pattern="A word (matched whole, any case, look-alike letters too) or re:<regular expression>",
        reason="Why (kept in the audit log)",
    )
    @moderator_only(CONFIG_REFUSAL)
    async def block_add(
        self, interaction: discord.Interaction, pattern: Pattern, reason: Reason | None = None
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            added = await guilds.add_block(
                s, interaction.guild_id, pattern, actor_id=interaction.user.id, reason=reason
            )
            view = await guilds.get_config(s, interaction.guild_id)
        log.info(
            "guild %s blocklist add (%s) by %s",
            interaction.guild_id,
            "added" if added else "duplicate",
            interaction.user.id,
        )
        entry = pattern.strip()
        if added:
            text = f"Blocked {code(entry)}. The blocklist has {len(view.blocklist)} entr{'y' if len(view.blocklist) == 1 else 'ies'}."
        else:
            text = f"{code(entry)} is already blocked (or an entry that matches the same spellings is)."
        await self._reply(interaction, text + reason_line(reason))

    @videoconfig.command(name="block-remove", description="Remove a word or pattern from the blocklist")
    @app_commands.describe(
        pattern="The entry exactly as /videoconfig show lists it", reason="Why (kept in the audit log)"
    )
    @moderator_only(CONFIG_REFUSAL)
    async def block_remove(
        self, interaction: discord.Interaction, pattern: Pattern, reason: Reason | None = None
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            removed = await guilds.remove_block(
                s, interaction.guild_id, pattern, actor_id=interaction.user.id, reason=reason
            )
        entry = pattern.strip()
        if removed:
            text = f"{code(entry)} is no longer blocked."
        else:
            text = f"{code(entry)} is not on the blocklist. /videoconfig show lists the entries."
        await self._reply(interaction, text + reason_line(reason))

    @videoconfig.command(
        name="moderator-role", description="Let a role use the moderator commands (empty clears)"
    )
    @app_commands.describe(
        role="The role; leave empty so only Manage Server counts", reason="Why (kept in the audit log)"
    )
    @moderator_only(CONFIG_REFUSAL)
    async def moderator_role(
        self, interaction: discord.Interaction, role: discord.Role | None = None, reason: Reason | None = None
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        role_id = role.id if role is not None else None
        async with self.app.db.transaction() as s:
            await guilds.set_moderator_role(
                s, interaction.guild_id, role_id, actor_id=interaction.user.id, reason=reason
            )
        log.info("guild %s moderator role -> %s by %s", interaction.guild_id, role_id, interaction.user.id)
        if role_id is None:
            text = "No moderator role: only members with Manage Server can use the moderator commands."
        else:
            text = f"Members with <@&{role_id}> can now use the moderator commands."
        await self._reply(interaction, text + reason_line(reason))


async def setup(bot: commands.Bot) -> None:
    """Extension entry point (``bot.cogs.config``)."""
    await bot.add_cog(ConfigCog(bot))
