"""``/quota show|set|grant|reset``: members see their video credits; moderators adjust them."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import QUOTA_REFUSAL, ack, is_moderator, moderator_only, role_ids
from bot.i18n import member_locale, user_mention
from videobot import quota
from videobot.errors import NotModerator
from videobot.i18n import N_, Duration, Number, Text, discord_timestamp, msg, nmsg, t, tn

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()

SOURCES = {
    "override": N_("a personal limit set by a moderator"),
    "role": N_("a role limit"),
    "guild": N_("this server's default"),
    "default": N_("the bot's default"),
}

Limit = app_commands.Range[int, 0, 100_000]
Credits = app_commands.Range[int, 1, 10_000]
Reason = app_commands.Range[str, 1, 300]


def window_text(seconds: float) -> Text:
    """'24 hours', '30 minutes', '7 days': the rolling window in words, in the reader's language."""
    if seconds >= 2 * 86400 and seconds % 86400 == 0:
        return nmsg("{n} day", "{n} days", int(seconds // 86400))
    if seconds >= 3600:
        if seconds % 3600 == 0:
            return nmsg("{n} hour", "{n} hours", int(seconds // 3600))
        return Duration(seconds)
    return nmsg("{n} minute", "{n} minutes", max(1, round(seconds / 60)))


def source_text(source: str) -> Text:
    return msg(SOURCES[source]) if source in SOURCES else source


def format_status(locale: str, user_id: int, st: quota.QuotaStatus, *, own: bool) -> str:
    """The ``/quota show`` reply in ``locale``."""
    whose = (
        t(locale, "Your video credits")
        if own
        else t(locale, "Video credits for {member}", member=user_mention(user_id))
    )
    window = window_text(st.window_seconds)
    lines = [
        f"**{whose}**",
        t(
            locale,
            "**{left}** left of {total}",
            left=Number(max(st.balance, 0)),
            total=Number(st.limit + st.granted),
        ),
        t(
            locale,
            "Limit: {limit} per {window} ({source})",
            limit=Number(st.limit),
            window=window,
            source=source_text(st.source),
        ),
    ]
    if st.granted:
        lines.append(
            t(locale, "Granted by moderators in this window: +{credits}", credits=Number(st.granted))
        )
    lines.append(t(locale, "Used in the last {window}: {used}", window=window, used=Number(st.used)))
    if st.next_credit_at is not None:
        lines.append(t(locale, "Next credit back: {when}", when=discord_timestamp(st.next_credit_at)))
    return "\n".join(lines)


def reason_line(locale: str, reason: str | None) -> str:
    """The moderator's reason under a confirmation (their own words, shown as typed)."""
    return "\n" + t(locale, "Reason: {reason}", reason=reason) if reason else ""


class QuotaCog(commands.Cog):
    """Thin layer over ``videobot.quota``: parse, call the service, format."""

    # No default_member_permissions here: Discord reads it on top-level commands only, and
    # /quota show is for everyone. set/grant/reset are guarded by the run-time check alone.
    quota_group = app_commands.Group(
        name="quota",
        description="Video credits: see yours, or (moderators) change a member's",
        guild_only=True,
    )

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        # Typed as Any: the bot class (bot/app.py) adds ``settings`` and ``db`` at start-up.
        self.app: Any = bot

    async def _status(
        self, session: Any, guild_id: int, member: discord.Member | discord.User
    ) -> quota.QuotaStatus:
        roles = role_ids(member) if isinstance(member, discord.Member) else []
        return await quota.status(
            session,
            guild_id,
            member.id,
            role_ids=roles,
            default_limit=self.app.settings.default_quota,
            window_seconds=self.app.settings.quota_window_seconds,
        )

    @quota_group.command(name="show", description="Show video credits: yours, or (moderators) a member's")
    @app_commands.describe(user="Whose credits to show; only moderators can look at someone else's")
    async def show(self, interaction: discord.Interaction, user: discord.Member | None = None) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None  # guild_only
        target = user or interaction.user
        own = target.id == interaction.user.id
        if not own and not await is_moderator(self.app, interaction):
            raise NotModerator(
                msg(
                    "Only moderators (Manage Server or the moderator role) can see another member's "
                    "credits. Use /quota show without a user to see yours."
                )
            )
        async with self.app.db.transaction() as s:
            st = await self._status(s, interaction.guild_id, target)
        await interaction.followup.send(
            format_status(member_locale(interaction), target.id, st, own=own),
            ephemeral=True,
            allowed_mentions=NO_PINGS,
        )

    @quota_group.command(name="set", description="Moderators: set a member's personal video limit")
    @app_commands.describe(
        user="The member", limit="Videos per window (0 stops them)", reason="Why (kept in the audit log)"
    )
    @moderator_only(QUOTA_REFUSAL)
    async def set_(
        self,
        interaction: discord.Interaction,
        user: discord.Member,
        limit: Limit,
        reason: Reason | None = None,
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            await quota.set_limit(
                s, interaction.guild_id, user.id, limit, actor_id=interaction.user.id, reason=reason
            )
            st = await self._status(s, interaction.guild_id, user)
        log.info(
            "quota set: guild %s, member %s, limit %s, by %s",
            interaction.guild_id,
            user.id,
            limit,
            interaction.user.id,
        )
        locale = member_locale(interaction)
        text = t(
            locale,
            "{member}'s limit is now **{limit}** per {window}; they have **{left}** left.",
            member=user_mention(user.id),
            limit=Number(limit),
            window=window_text(st.window_seconds),
            left=Number(max(st.balance, 0)),
        )
        await interaction.followup.send(
            text + reason_line(locale, reason),
            ephemeral=True,
            allowed_mentions=NO_PINGS,
        )

    @quota_group.command(
        name="grant", description="Moderators: give a member extra video credits for this window"
    )
    @app_commands.describe(
        user="The member", credits="How many extra videos", reason="Why (kept in the audit log)"
    )
    @moderator_only(QUOTA_REFUSAL)
    async def grant(
        self,
        interaction: discord.Interaction,
        user: discord.Member,
        credits: Credits,
        reason: Reason | None = None,
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            await quota.grant(
                s, interaction.guild_id, user.id, credits, actor_id=interaction.user.id, reason=reason
            )
            st = await self._status(s, interaction.guild_id, user)
        log.info(
            "quota grant: guild %s, member %s, +%s, by %s",
            interaction.guild_id,
            user.id,
            credits,
            interaction.user.id,
        )
        locale = member_locale(interaction)
        text = tn(
            locale,
            "Granted **{n}** extra credit to {member} for the next {window}; they have **{left}** left.",
            "Granted **{n}** extra credits to {member} for the next {window}; they have **{left}** left.",
            credits,
            member=user_mention(user.id),
            window=window_text(st.window_seconds),
            left=Number(max(st.balance, 0)),
        )
        await interaction.followup.send(
            text + reason_line(locale, reason),
            ephemeral=True,
            allowed_mentions=NO_PINGS,
        )

    @quota_group.command(name="reset", description="Moderators: clear a member's usage and personal limit")
    @app_commands.describe(user="The member", reason="Why (kept in the audit log)")
    @moderator_only(QUOTA_REFUSAL)
    async def reset(
        self, interaction: discord.Interaction, user: discord.Member, reason: Reason | None = None
    ) -> None:
        await ack(interaction)
        assert interaction.guild_id is not None
        async with self.app.db.transaction() as s:
            await quota.reset(s, interaction.guild_id, user.id, actor_id=interaction.user.id, reason=reason)
            st = await self._status(s, interaction.guild_id, user)
        log.info(
            "quota reset: guild %s, member %s, by %s", interaction.guild_id, user.id, interaction.user.id
        )
        locale = member_locale(interaction)
        text = t(
            locale,
            "Fresh start for {member}: usage cleared and personal limit removed; "
            "they have **{left}** of {limit} ({source}).",
            member=user_mention(user.id),
            left=Number(max(st.balance, 0)),
            limit=Number(st.limit),
            source=source_text(st.source),
        )
        await interaction.followup.send(
            text + reason_line(locale, reason),
            ephemeral=True,
            allowed_mentions=NO_PINGS,
        )


async def setup(bot: commands.Bot) -> None:
    """Extension entry point (``bot.cogs.quota``)."""
    await bot.add_cog(QuotaCog(bot))
