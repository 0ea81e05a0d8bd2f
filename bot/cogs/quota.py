"""``/quota show|set|grant|reset``: members see their video credits; moderators adjust them."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import QUOTA_REFUSAL, ack, is_moderator, moderator_only, role_ids
from videobot import quota
from videobot.errors import NotModerator

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()

SOURCES = {
    "override": "a personal limit set by a moderator",
    "role": "a role limit",
    "guild": "this server's default",
    "default": "the bot's default",
}

Limit = app_commands.Range[int, 0, 100_000]
Credits = app_commands.Range[int, 1, 10_000]
Reason = app_commands.Range[str, 1, 300]


def window_text(seconds: float) -> str:
    """'24 hours', '30 minutes', '7 days': the rolling window in words."""
    if seconds >= 2 * 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)} days"
    if seconds >= 3600:
        hours = seconds / 3600
        return f"{hours:g} hour" + ("" if hours == 1 else "s")
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute" + ("" if minutes == 1 else "s")


def format_status(user_id: int, st: quota.QuotaStatus, *, own: bool) -> str:
    """The ``/quota show`` reply."""
    whose = "Your video credits" if own else f"Video credits for <@{user_id}>"
    lines = [f"**{whose}**", f"**{max(st.balance, 0)}** left of {st.limit + st.granted}"]
    lines.append(
        f"Limit: {st.limit} per {window_text(st.window_seconds)} ({SOURCES.get(st.source, st.source)})"
    )
    if st.granted:
        lines.append(f"Granted by moderators in this window: +{st.granted}")
    lines.append(f"Used in the last {window_text(st.window_seconds)}: {st.used}")
    if st.next_credit_at is not None:
        lines.append(f"Next credit back: <t:{int(st.next_credit_at)}:R>")
    return "\n".join(lines)


def reason_line(reason: str | None) -> str:
    return f"\nReason: {reason}" if reason else ""


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
                "Only moderators (Manage Server or the moderator role) can see another member's credits. "
                "Use /quota show without a user to see yours."
            )
        async with self.app.db.transaction() as s:
            st = await self._status(s, interaction.guild_id, target)
        await interaction.followup.send(
            format_status(target.id, st, own=own), ephemeral=True, allowed_mentions=NO_PINGS
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
        await interaction.followup.send(
            f"<@{user.id}>'s limit is now **{limit}** per {window_text(st.window_seconds)}; "
            f"they have **{max(st.balance, 0)}** left.{reason_line(reason)}",
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
        await interaction.followup.send(
            f"Granted **{credits}** extra credit(s) to <@{user.id}> for the next {window_text(st.window_seconds)}; "
            f"they have **{max(st.balance, 0)}** left.{reason_line(reason)}",
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
        await interaction.followup.send(
            f"Fresh start for <@{user.id}>: usage cleared and personal limit removed; "
            f"they have **{max(st.balance, 0)}** of {st.limit} ({SOURCES.get(st.source, st.source)}).{reason_line(reason)}",
            ephemeral=True,
            allowed_mentions=NO_PINGS,
        )


async def setup(bot: commands.Bot) -> None:
    """Extension entry point (``bot.cogs.quota``)."""
    await bot.add_cog(QuotaCog(bot))
