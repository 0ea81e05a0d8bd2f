"""``is_moderator`` and ``moderator_only`` on real discord.py objects built from Discord payloads.

The guild, members, interactions and reaction events are discord.py's own classes, parsed from
wire payloads shaped like Discord's (the fake Discord's world model writes them); the moderator
role lives in the real database fixture.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import discord
import pytest
from discord import app_commands

from bot import checks
from tests.fakediscord import world as w
from videobot import guilds
from videobot.db import Database
from videobot.errors import VideobotError


class World:
    """A guild as Discord describes it, and discord.py's view of it."""

    def __init__(self) -> None:
        self.owner = w.User(w.snowflake(), "owner")
        self.guild = w.Guild(w.snowflake(), "Test", self.owner.id)
        g = self.guild
        g.roles[g.id] = w.Role(g.id, "@everyone", w.DEFAULT_EVERYONE_PERMISSIONS, position=0)
        self.admins = self._role("Server Admins", w.MANAGE_GUILD)
        self.administrator = self._role("Administrators", w.ADMINISTRATOR)
        self.mods = self._role("Video Mods", 0)
        self.artists = self._role("Artists", 0)
        self.channel = w.Channel(w.snowflake(), g.id, "videos")
        g.channels[self.channel.id] = self.channel
        self.manager = self._member("manager", [self.admins])
        self.admin = self._member("admin", [self.administrator])
        self.rolemod = self._member("rolemod", [self.mods, self.artists])
        self.plain = self._member("plain", [self.artists])
        self._member("owner", [], user=self.owner)
        self.bot_user = w.User(w.snowflake(), "videobot", bot=True)
        self._member("videobot", [self._role("videobot", w.DEFAULT_BOT_PERMISSIONS)], user=self.bot_user)

        intents = discord.Intents.none()
        intents.guilds = intents.guild_reactions = True  # what the bot asks for
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        self.client = discord.Client(intents=intents)
        self.state = self.client._connection
        self.state.user = discord.ClientUser(state=self.state, data=self.bot_user.wire())  # type: ignore[arg-type]
        self.events: list[tuple[str, Any]] = []
        self.state.dispatch = lambda event, *args: self.events.append((event, *args))  # type: ignore[method-assign]
        # Cached from GUILD_CREATE, as the bot's guilds intent gives it (no member list: not privileged).
        self.dguild = discord.Guild(data=g.wire(members=[]), state=self.state)  # type: ignore[arg-type]
        self.state._add_guild(self.dguild)

    def _role(self, name: str, permissions: int) -> int:
        role = w.Role(w.snowflake(), name, permissions, position=len(self.guild.roles))
        self.guild.roles[role.id] = role
        return role.id

    def _member(self, name: str, roles: list[int], user: w.User | None = None) -> int:
        user = user or w.User(w.snowflake(), name)
        self.guild.members[user.id] = w.Member(user, roles=roles)
        return user.id

    def member(self, user_id: int) -> discord.Member:
        return discord.Member(data=self.guild.members[user_id].wire(), guild=self.dguild, state=self.state)  # type: ignore[arg-type]

    def interaction(self, user_id: int) -> discord.Interaction:
        """INTERACTION_CREATE for ``/quota set`` by ``user_id``, with Discord's computed permissions."""
        g, ch = self.guild, self.channel
        perms = str(g.permissions_in(user_id, ch.id))
        payload = {
            "id": str(w.snowflake()),
            "application_id": str(w.snowflake()),
            "type": 2,
            "token": "token",
            "version": 1,
            "guild_id": str(g.id),
            "guild": {"id": str(g.id), "locale": "en-US", "features": []},
            "channel_id": str(ch.id),
            "channel": {**ch.wire(), "permissions": perms},
            "member": {**g.members[user_id].wire(), "permissions": perms},
            "app_permissions": "0",
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(g.id)},
            "context": 0,
            "attachment_size_limit": 10 * w.MiB,
            "data": {"id": str(w.snowflake()), "name": "quota", "type": 1, "options": []},
        }
        return discord.Interaction(data=payload, state=self.state)  # type: ignore[arg-type]

    def reaction_member(self, user_id: int, *, cached_guild: bool = True) -> discord.Member | None:
        """``payload.member`` of a MESSAGE_REACTION_ADD, parsed by discord.py's own gateway handler."""
        if not cached_guild:
            self.state._remove_guild(self.dguild)
        self.state.parse_message_reaction_add(
            {
                "user_id": str(user_id),
                "channel_id": str(self.channel.id),
                "message_id": str(w.snowflake()),
                "guild_id": str(self.guild.id),
                "emoji": {"id": None, "name": "🔁"},
                "member": self.guild.members[user_id].wire(),
                "message_author_id": str(w.snowflake()),
                "burst": False,
                "burst_colors": [],
                "type": 0,
            }
        )
        if not cached_guild:
            self.state._add_guild(self.dguild)
        event, raw = self.events.pop()
        assert event == "raw_reaction_add"
        return raw.member


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
async def bot(db: Database, world: World) -> SimpleNamespace:
    """What ``is_moderator`` needs from the bot: its database, with the moderator role configured."""
    async with db.transaction() as s:
        await guilds.set_moderator_role(s, world.guild.id, world.mods, actor_id=world.owner.id)
    return SimpleNamespace(db=db)


async def test_interaction_from_member_with_manage_server(bot: SimpleNamespace, world: World) -> None:
    assert await checks.is_moderator(bot, world.interaction(world.manager))
    assert await checks.is_moderator(bot, world.interaction(world.admin))
    assert await checks.is_moderator(bot, world.interaction(world.owner.id))


async def test_interaction_from_member_with_moderator_role(bot: SimpleNamespace, world: World) -> None:
    interaction = world.interaction(world.rolemod)
    assert not interaction.permissions.manage_guild  # the role grants nothing: the config does
    assert await checks.is_moderator(bot, interaction)


async def test_ordinary_member_is_not_a_moderator(bot: SimpleNamespace, world: World) -> None:
    # Discord delivers this interaction when an admin opened the command to everyone: the
    # command's default_member_permissions did not stop it, so the run-time check must.
    assert not await checks.is_moderator(bot, world.interaction(world.plain))


async def test_moderator_role_unset_means_manage_server_only(db: Database, world: World) -> None:
    bot = SimpleNamespace(db=db)  # no guild configuration at all
    assert not await checks.is_moderator(bot, world.interaction(world.rolemod))
    assert await checks.is_moderator(bot, world.interaction(world.manager))


async def test_members_from_guild_cache(bot: SimpleNamespace, world: World) -> None:
    assert await checks.is_moderator(bot, world.member(world.manager))
    assert await checks.is_moderator(bot, world.member(world.admin))
    assert await checks.is_moderator(bot, world.member(world.owner.id))
    assert await checks.is_moderator(bot, world.member(world.rolemod))
    assert not await checks.is_moderator(bot, world.member(world.plain))


async def test_reaction_event_member(bot: SimpleNamespace, world: World) -> None:
    member = world.reaction_member(world.manager)
    assert isinstance(member, discord.Member) and member.guild_permissions.manage_guild
    assert await checks.is_moderator(bot, member)
    assert await checks.is_moderator(bot, world.reaction_member(world.rolemod))
    assert not await checks.is_moderator(bot, world.reaction_member(world.plain))
    # Guild not cached: discord.py gives no member, and nobody is a moderator by accident.
    assert world.reaction_member(world.manager, cached_guild=False) is None
    assert not await checks.is_moderator(bot, None)


async def test_moderator_only_check_refuses_politely(
    bot: SimpleNamespace, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    acked: list[int] = []

    async def ack(interaction: discord.Interaction) -> None:  # no Discord to answer here
        acked.append(interaction.id)

    monkeypatch.setattr(checks, "ack", ack)

    @checks.moderator_only()
    async def quota_set(interaction: discord.Interaction) -> None: ...

    command = app_commands.Command(name="set", description="set", callback=quota_set)
    predicate = command.checks[0]
    world.client.db = bot.db  # type: ignore[attr-defined]  # interaction.client is the bot, as VideoBot carries db

    # Manage Server: allowed without touching the database or acknowledging.
    assert await predicate(world.interaction(world.manager)) is True
    assert acked == []
    # The moderator role: allowed after acknowledging (the role needs a database read).
    assert await predicate(world.interaction(world.rolemod)) is True
    assert len(acked) == 1

    with pytest.raises(app_commands.CheckFailure) as err:
        await predicate(world.interaction(world.plain))
    assert str(err.value) == "Only moderators (Manage Server or the moderator role) can change quotas."
    # The tree's error handler shows a VideobotError's message as is.
    assert isinstance(err.value, VideobotError) and err.value.message == str(err.value)
