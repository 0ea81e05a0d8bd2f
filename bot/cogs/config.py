"""``/videoconfig``: moderators set the server's default quota, role limits, channels, blocklist, moderator role."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import CONFIG_REFUSAL, ack, moderator_only
from bot.cogs.quota import Limit, Reason, reason_line
from bot.i18n import channel_mention, member_locale, role_mention
from videobot import guilds, i18n, planning, quota, styles
from videobot.guilds import MAX_PATTERN_CHARS, InvalidConfig
from videobot.i18n import N_, Number, format_number, msg, t, tn
from videobot.safety import DEFAULT_LEVEL, SafetyLevel

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


def channel_list(channel_ids: tuple[int, ...] | list[int]) -> str:
    return ", ".join(channel_mention(c) for c in channel_ids)


def format_config(
    locale: str,
    view: guilds.GuildSettingsView,
    role_limits: list[tuple[int, int]],
    *,
    setting_default: int,
    discord_locale: str | None = None,
) -> str:
    """The ``/videoconfig show`` reply in ``locale``, kept under Discord's 2,000 characters."""
    if view.default_limit is not None:
        default = t(locale, "{n} per member", n=Number(view.default_limit))
    else:
        default = t(locale, "{n} (the bot's default)", n=Number(setting_default))
    title = t(locale, "Video settings for this server")
    lines = [
        f"**{title}**",
        t(locale, "Default quota: {quota}", quota=default),
    ]
    if role_limits:
        limits = ", ".join(f"<@&{r}> {format_number(locale, n)}" for r, n in role_limits)
        lines.append(t(locale, "Role limits (the highest applies): {limits}", limits=limits))
    else:
        lines.append(t(locale, "Role limits: none"))
    if view.allowed_channel_ids:
        lines.append(
            t(locale, "/video allowed in: {channels}", channels=channel_list(view.allowed_channel_ids))
        )
    else:
        lines.append(t(locale, "/video allowed in: every channel"))
    if view.moderator_role_id:
        lines.append(t(locale, "Moderator role: {role}", role=role_mention(view.moderator_role_id)))
    else:
        lines.append(t(locale, "Moderator role: none (Manage Server only)"))
    lines.append(
        t(
            locale,
            "Language of public messages: {language}",
            language=language_text(locale, view.language, discord_locale),
        )
    )
    level = code(view.safety_level or DEFAULT_LEVEL.value)
    if view.safety_everywhere:
        lines.append(t(locale, "Safety check: {level}, age-restricted channels too", level=level))
    else:
        lines.append(t(locale, "Safety check: {level} (age-restricted channels: posted)", level=level))
    if view.review_channel_id:
        lines.append(t(locale, "Review channel: {channel}", channel=channel_mention(view.review_channel_id)))
    else:
        lines.append(t(locale, "Review channel: none (held results are rejected)"))
    if view.enhance:
        lines.append(
            t(locale, "Prompt enhancement: on (members can turn it off with the enhance option of /video)")
        )
    else:
        lines.append(
            t(locale, "Prompt enhancement: off (members can turn it on with the enhance option of /video)")
        )
    lines.append(tn(locale, "Blocklist: {n} entry", "Blocklist: {n} entries", len(view.blocklist)))
    text = "\n".join(lines)
    for i, entry in enumerate(view.blocklist):
        line = f"\n- {code(entry)}"
        more = "\n" + tn(locale, "… and {n} more", "… and {n} more", len(view.blocklist) - i)
        if len(text) + len(line) + len(more) > MESSAGE_LIMIT:
            return text + more
        text += line
    return text


def language_text(locale: str, language: str | None, discord_locale: str | None) -> str:
    """The server's public language as /videoconfig shows it."""
    if language:
        return i18n.LANGUAGES.get(language, language)
    follows = i18n.LANGUAGES[i18n.language(discord_locale)] if discord_locale else i18n.LANGUAGES[i18n.SOURCE]
    return t(locale, "the server's default ({language})", language=follows)


#: /videoconfig language choices: "server default" clears the setting.
SERVER_DEFAULT = "default"
LANGUAGE_CHOICES = [
    app_commands.Choice(name=N_("Server default (the server's language in Discord)"), value=SERVER_DEFAULT),
    *(app_commands.Choice(name=name, value=code) for code, name in i18n.LANGUAGES.items()),
]


#: ``/videoconfig safety`` levels (``videobot.safety.SafetyLevel``).
SAFETY_CHOICES = [app_commands.Choice(name=level.value, value=level.value) for level in SafetyLevel]


StyleName = app_commands.Range[str, 1, styles.MAX_NAME_CHARS]


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

    style = app_commands.Group(
        name="style",
        description="Moderators: this server's styles (LoRAs members pick on /video)",
        parent=videoconfig,
    )

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        # The bot class (bot/app.py) carries ``settings`` and ``db``.
        self.app: Any = bot

    async def _reply(self, interaction: discord.Interaction, text: str, reason: str | None = None) -> None:
        """The ephemeral confirmation (already in the member's language), with the reason typed if any."""
        text += reason_line(member_locale(interaction), reason)
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS)

    @videoconfig.command(name="show", description="Show this server's video settings")
    @moderator_only(CONFIG_REFUSAL)
    async def show(self, interaction: discord.Interaction) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            view = await guilds.get_config(s, interaction.guild_id)
            limits = await guilds.role_limits(s, interaction.guild_id)
        text = format_config(
            member_locale(interaction),
            view,
            limits,
            setting_default=self.app.settings.default_quota,
            discord_locale=self.app.languages.discord_locale(interaction.guild_id, interaction),
        )
        await self._reply(interaction, text)

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
        locale = member_locale(interaction)
        if limit is None:
            text = t(
                locale,
                "The default quota is back to the bot's default ({n}).",
                n=Number(self.app.settings.default_quota),
            )
        else:
            text = tn(
                locale,
                "The default quota is now **{n}** video per member.",
                "The default quota is now **{n}** videos per member.",
                limit,
            )
        await self._reply(interaction, text, reason)

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
        locale = member_locale(interaction)
        if limit is None:
            text = t(locale, "{role} no longer has its own limit.", role=role_mention(role.id))
        else:
            text = tn(
                locale,
                "Members with {role} may make **{n}** video per window (the highest role limit applies).",
                "Members with {role} may make **{n}** videos per window (the highest role limit applies).",
                limit,
                role=role_mention(role.id),
            )
        await self._reply(interaction, text, reason)

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
        where = channel_list(view.allowed_channel_ids)
        if added:
            template = N_("{channel} is now allowed. /video works in: {channels}.")
        else:
            template = N_("{channel} was already allowed. /video works in: {channels}.")
        text = t(member_locale(interaction), template, channel=channel_mention(channel.id), channels=where)
        await self._reply(interaction, text, reason)

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
        locale, mention = member_locale(interaction), channel_mention(channel.id)
        if not removed:
            text = t(locale, "{channel} was not on the list.", channel=mention)
        elif view.allowed_channel_ids:
            text = t(
                locale,
                "{channel} removed. /video works in: {channels}.",
                channel=mention,
                channels=channel_list(view.allowed_channel_ids),
            )
        else:
            text = t(
                locale,
                "{channel} removed. No channels are listed any more, so /video works in every channel.",
                channel=mention,
            )
        await self._reply(interaction, text, reason)

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
        await self._reply(
            interaction, t(member_locale(interaction), "/video works in every channel again."), reason
        )

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
        entry, locale = code(pattern.strip()), member_locale(interaction)
        if added:
            text = tn(
                locale,
                "Blocked {entry}. The blocklist has {n} entry.",
                "Blocked {entry}. The blocklist has {n} entries.",
                len(view.blocklist),
                entry=entry,
            )
        else:
            text = t(
                locale,
                "{entry} is already blocked (or an entry that matches the same spellings is).",
                entry=entry,
            )
        await self._reply(interaction, text, reason)

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
        entry, locale = code(pattern.strip()), member_locale(interaction)
        if removed:
            text = t(locale, "{entry} is no longer blocked.", entry=entry)
        else:
            text = t(
                locale, "{entry} is not on the blocklist. /videoconfig show lists the entries.", entry=entry
            )
        await self._reply(interaction, text, reason)

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
        locale = member_locale(interaction)
        if role_id is None:
            text = t(
                locale, "No moderator role: only members with Manage Server can use the moderator commands."
            )
        else:
            text = t(
                locale, "Members with {role} can now use the moderator commands.", role=role_mention(role_id)
            )
        await self._reply(interaction, text, reason)

    @videoconfig.command(name="language", description="The language of the bot's public messages here")
    @app_commands.describe(
        language="A language, or the server's default (its language in Discord's server settings)",
        reason="Why (kept in the audit log)",
    )
    @app_commands.choices(language=LANGUAGE_CHOICES)
    @moderator_only(CONFIG_REFUSAL)
    async def language(
        self,
        interaction: discord.Interaction,
        language: app_commands.Choice[str],
        reason: Reason | None = None,
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        chosen = None if language.value == SERVER_DEFAULT else language.value
        async with self.app.db.transaction() as s:
            await guilds.set_language(
                s, interaction.guild_id, chosen, actor_id=interaction.user.id, reason=reason
            )
        self.app.languages.remember(interaction.guild_id, chosen)
        log.info("guild %s language -> %s by %s", interaction.guild_id, chosen, interaction.user.id)
        locale = member_locale(interaction)
        if chosen is None:
            follows = self.app.languages.discord_locale(interaction.guild_id, interaction)
            text = t(
                locale,
                "Public messages (status, progress, results) now follow the server's language in Discord: {language}.",
                language=i18n.LANGUAGES[i18n.language(follows)],
            )
        else:
            text = t(
                locale,
                "Public messages (status, progress, results) are now in {language}. "
                "Private answers stay in each member's own language.",
                language=i18n.LANGUAGES[chosen],
            )
        await self._reply(interaction, text, reason)

    @videoconfig.command(name="safety", description="How strictly results are checked before they are posted")
    @app_commands.describe(
        level="strict (default): hold anything even mildly unsafe; standard: only the likely; off: post all",
        age_restricted="Check results in age-restricted channels too (by default they are posted there)",
        charge_held="Keep the credit of a held result (by default it is refunded)",
        reason="Why (kept in the audit log)",
    )
    @app_commands.choices(level=SAFETY_CHOICES)
    @moderator_only(CONFIG_REFUSAL)
    async def safety(
        self,
        interaction: discord.Interaction,
        level: app_commands.Choice[str],
        age_restricted: bool = False,
        charge_held: bool = False,
        reason: Reason | None = None,
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            await guilds.set_safety(
                s,
                interaction.guild_id,
                level.value,
                everywhere=age_restricted,
                charge_held=charge_held,
                actor_id=interaction.user.id,
                reason=reason,
            )
        log.info(
            "guild %s safety -> %s (age-restricted checked: %s)",
            interaction.guild_id,
            level.value,
            age_restricted,
        )
        locale = member_locale(interaction)
        text = t(locale, "Results are now checked at the {level} level.", level=code(level.value))
        if age_restricted:
            text += " " + t(locale, "Age-restricted channels are checked too.")
        else:
            text += " " + t(locale, "Results in age-restricted channels are posted without the check.")
        if charge_held:
            text += " " + t(locale, "A held result keeps its credit.")
        else:
            text += " " + t(locale, "A held result is refunded.")
        await self._reply(interaction, text, reason)

    @videoconfig.command(
        name="enhance",
        description="Whether a language model writes members' prompts out in detail by default",
    )
    @app_commands.describe(
        enabled="On: prompts are enhanced unless a member turns the enhance option of /video off",
        reason="Why (kept in the audit log)",
    )
    @moderator_only(CONFIG_REFUSAL)
    async def enhance(
        self, interaction: discord.Interaction, enabled: bool, reason: Reason | None = None
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        if enabled and not planning.enhance_offered(self.app.settings):
            raise InvalidConfig(
                msg(
                    "Prompt enhancement is not available: this videobot has no language model for it "
                    "(its owner turned VIDEOBOT_ENHANCE_MODEL off)."
                )
            )
        async with self.app.db.transaction() as s:
            await guilds.set_enhance(
                s, interaction.guild_id, enabled, actor_id=interaction.user.id, reason=reason
            )
        log.info(
            "guild %s prompt enhancement -> %s by %s", interaction.guild_id, enabled, interaction.user.id
        )
        locale = member_locale(interaction)
        if enabled:
            text = t(
                locale,
                "Prompts are now enhanced by a language model before the video is made, and the result "
                "shows the enhanced prompt. Members can still choose with the enhance option of /video.",
            )
        else:
            text = t(
                locale,
                "Prompts are now used as written. Members can still ask for enhancement with the enhance "
                "option of /video.",
            )
        await self._reply(interaction, text, reason)

    @videoconfig.command(name="review-channel", description="Where moderators review held results")
    @app_commands.describe(
        channel="The channel (leave empty: no review; held results are then rejected)",
        reason="Why (kept in the audit log)",
    )
    @moderator_only(CONFIG_REFUSAL)
    async def review_channel(
        self, interaction: discord.Interaction, channel: Channel | None = None, reason: Reason | None = None
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            await guilds.set_review_channel(
                s,
                interaction.guild_id,
                channel.id if channel is not None else None,
                actor_id=interaction.user.id,
                reason=reason,
            )
        locale = member_locale(interaction)
        if channel is None:
            text = t(locale, "No review channel: results the safety check holds are rejected.")
        else:
            text = t(
                locale,
                "Results the safety check holds now wait for a moderator in {channel}.",
                channel=channel_mention(channel.id),
            )
        await self._reply(interaction, text, reason)

    @style.command(name="add", description="Add a style: a LoRA from the Hugging Face Hub")
    @app_commands.describe(
        name="A short name members pick (letters, digits, - or _), e.g. watercolor",
        source="The Hub repo id and the LoRA's weight file in it, e.g. owner/repo:style.safetensors",
        scale="How strongly it applies, 1 = as trained (from -10 to 10)",
        trigger_words="Words the LoRA was trained with; added to the prompt the model gets",
        reason="Why (kept in the audit log)",
    )
    @moderator_only(CONFIG_REFUSAL)
    async def style_add(
        self,
        interaction: discord.Interaction,
        name: StyleName,
        source: app_commands.Range[str, 1, 300],
        scale: app_commands.Range[float, -10.0, 10.0] = 1.0,
        trigger_words: app_commands.Range[str, 1, styles.MAX_TRIGGER_CHARS] | None = None,
        reason: Reason | None = None,
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        planning.check_style(self.app.settings, name)
        async with self.app.db.transaction() as s:
            info = await styles.add_style(
                s,
                interaction.guild_id,
                name,
                source,
                scale=scale,
                trigger_words=trigger_words,
                actor_id=interaction.user.id,
                reason=reason,
            )
        log.info(
            "guild %s style %s added (%s) by %s",
            interaction.guild_id,
            info.name,
            info.source,
            interaction.user.id,
        )
        text = t(
            member_locale(interaction),
            "Added the style `{name}` ({source}). Members can now pick it with `/video style:{name}`; "
            "the first video with it takes a little longer while a worker downloads it.",
            name=info.name,
            source=code(info.source),
        )
        await self._reply(interaction, text, reason)

    @style.command(name="remove", description="Remove a style (videos already queued keep it)")
    @app_commands.describe(name="The style's name", reason="Why (kept in the audit log)")
    @moderator_only(CONFIG_REFUSAL)
    async def style_remove(
        self, interaction: discord.Interaction, name: StyleName, reason: Reason | None = None
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            removed = await styles.remove_style(
                s, interaction.guild_id, name, actor_id=interaction.user.id, reason=reason
            )
        locale = member_locale(interaction)
        if removed is None:
            text = t(
                locale,
                "This server has no style `{name}`. `/videoconfig style list` shows its styles.",
                name=name.strip().lower().replace("`", "'")[:40],
            )
        else:
            log.info(
                "guild %s style %s removed by %s", interaction.guild_id, removed.name, interaction.user.id
            )
            text = t(
                locale,
                "Removed the style `{name}`. Videos already queued with it are still made.",
                name=removed.name,
            )
        await self._reply(interaction, text, reason)

    @style.command(name="list", description="List this server's styles")
    @moderator_only(CONFIG_REFUSAL)
    async def style_list(self, interaction: discord.Interaction) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.sessionmaker() as s:
            found = await styles.list_styles(s, interaction.guild_id)
        await self._reply(interaction, format_styles(member_locale(interaction), found))

    @style_remove.autocomplete("name")
    async def _style_name_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        async with self.app.db.sessionmaker() as s:
            names = await styles.style_names(s, interaction.guild_id, current)
        return [app_commands.Choice(name=n, value=n) for n in names]


def format_styles(locale: str, found: list[styles.StyleInfo]) -> str:
    """The ``/videoconfig style list`` reply in ``locale``, kept under Discord's 2,000 characters."""
    if not found:
        return t(locale, "This server has no styles yet. Add one with `/videoconfig style add`.")
    lines = [
        t(
            locale,
            "**Styles on this server** ({n} of {max}); members pick them with `/video style:`",
            n=Number(len(found)),
            max=Number(styles.MAX_STYLES),
        )
    ]
    for info in found:
        line = f"- `{info.name}` · {code(info.source)} · " + t(
            locale, "scale {scale}", scale=format_number(locale, info.scale)
        )
        if info.trigger_words:
            line += " · " + t(locale, "trigger words: {words}", words=code(info.trigger_words))
        lines.append(line)
    return "\n".join(lines)[:MESSAGE_LIMIT]


async def setup(bot: commands.Bot) -> None:
    """Extension entry point (``bot.cogs.config``)."""
    await bot.add_cog(ConfigCog(bot))
