"""What the commands (``bot.cogs``) and the delivery loop (``bot.delivery``) need from the running bot,
as narrow interfaces: the app (``bot.app.VideoBot``) provides them and wires the parts together at
start, and neither side imports the app (nor each other).
"""

from __future__ import annotations

from typing import Any, Protocol

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands
from discord.http import HTTPClient

from videobot.db import Database
from videobot.images import Decoder
from videobot.jobs import IntakeBatcher, JobQueue, SubmitBatcher
from videobot.settings import Settings


class HasDatabase(Protocol):
    """Anything that carries the database (the moderator check, the servers' languages)."""

    db: Database


class Languages(Protocol):
    """The language of each server's public messages (``bot.i18n.GuildLanguages``)."""

    async def locale(self, guild_id: int) -> str: ...


class StatusPosts(Protocol):
    """What the commands ask of the delivery loop (``bot.delivery.DeliveryService``)."""

    def wake(self) -> None:
        """Read the job feed now: a job was submitted or cancelled."""

    def post_status(self, job_id: int, channel_id: int) -> None:
        """Post the job's public status message in the background (idempotent)."""


class DiscordClient(Protocol):
    """The parts of ``discord.Client`` both sides use."""

    http: HTTPClient

    @property
    def user(self) -> discord.ClientUser | None: ...

    def get_partial_messageable(
        self, id: int, *, guild_id: int | None = None, type: discord.ChannelType | None = None
    ) -> discord.PartialMessageable: ...


class DeliveryHost(DiscordClient, Protocol):
    """What the delivery loop needs: the settings, the servers' languages and the Discord client."""

    settings: Settings
    languages: Languages


class CommandHost(DiscordClient, Protocol):
    """What the commands need: the services built in ``main()`` and the Discord client."""

    settings: Settings
    db: Database
    queue: JobQueue
    submitter: SubmitBatcher
    intakes: IntakeBatcher
    delivery: StatusPosts
    languages: Languages
    http_session: aiohttp.ClientSession | None
    image_decoder: Decoder

    @property
    def tree(self) -> app_commands.CommandTree[Any]: ...

    def get_channel(self, id: int, /) -> Any: ...

    def add_dynamic_items(self, *items: type[discord.ui.DynamicItem[Any]]) -> None: ...

    def remove_dynamic_items(self, *items: type[discord.ui.DynamicItem[Any]]) -> None: ...

    async def add_cog(self, cog: commands.Cog, /) -> None: ...
