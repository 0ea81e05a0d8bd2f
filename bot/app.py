"""``videobot bot``: the Discord side. Built once in ``main(settings)`` and handed down.

The bot needs no privileged intents (no message content, no member list): slash commands and
reactions are all it reads. Commands are synced only when their payloads changed since the last
sync (a hash per application and scope in the data dir), to the guilds in ``VIDEOBOT_GUILD_IDS``
if set (instant), else globally.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot import errors as bot_errors
from bot.connection import DiscordLink
from bot.connection import describe as describe_discord_problem
from bot.delivery import DeliveryService
from bot.endpoints import use_endpoints
from bot.i18n import CatalogTranslator, GuildLanguages
from videobot import i18n, images
from videobot.botlock import AnotherBotRunning, BotLock
from videobot.db import Database
from videobot.health import HealthServer
from videobot.jobs import IntakeBatcher, JobQueue, QueueConfig, SubmitBatcher
from videobot.logs import describe_error
from videobot.maintenance import Maintenance, MaintenanceConfig
from videobot.settings import Settings

log = logging.getLogger(__name__)

#: Every extension is core: one that fails to load stops start-up (a bot without its moderator
#: commands would let quotas and channel rules go unmanaged).
CORE_EXTENSIONS = (
    "bot.cogs.generate",
    "bot.cogs.jobs",
    "bot.cogs.quota",
    "bot.cogs.config",
    "bot.cogs.review",
)
SYNC_STATE_FILE = "command-sync.json"

TOKEN_REJECTED = (
    "Discord rejected DISCORD_TOKEN (it was reset, or copied incompletely). Get a new one at "
    "https://discord.com/developers/applications -> your app -> Bot -> Reset Token, and put it in .env."
)


def intents() -> discord.Intents:
    """Guilds (channels, roles), guild messages and reactions: none of them privileged."""
    i = discord.Intents.none()
    i.guilds = True
    i.guild_messages = True
    i.guild_reactions = True
    return i


class VideoBot(commands.Bot):
    """The bot: settings, database and job queue are passed in; extensions add the commands."""

    def __init__(self, settings: Settings, db: Database, queue: JobQueue) -> None:
        # The bot never joins voice: don't warn at every start that voice libraries are missing.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            command_prefix=commands.when_mentioned,  # required by commands.Bot; there are no prefix commands
            help_command=None,
            intents=intents(),
            allowed_mentions=discord.AllowedMentions.none(),
            max_messages=None,  # nothing reads the message cache; reactions use raw events
            chunk_guilds_at_startup=False,
        )
        self.settings = settings
        self.db = db
        self.queue = queue
        #: /video submits arriving together share one transaction (``videobot.jobs.batching``).
        sqlite = db.dialect == "sqlite"
        self.submitter = SubmitBatcher(queue, max_batch=64 if sqlite else 8, concurrency=1 if sqlite else 8)
        #: Requests recorded before their slow steps, answered by the next bot if this one dies.
        self.intakes = IntakeBatcher(queue)
        self.delivery = DeliveryService(self, queue, poll_seconds=settings.poll_seconds)
        #: The language of each server's public messages (``bot.i18n``).
        self.languages = GuildLanguages(self)
        self.started_monotonic = time.monotonic()
        self.synced = False
        self._ready_logged = False
        #: For members' pictures from Discord's CDN (``bot.cogs.generate._image``); opened in setup_hook.
        self.http_session: aiohttp.ClientSession | None = None
        #: Decodes members' pictures, a bounded number at a time (``videobot.images.Decoder``).
        self.image_decoder = images.Decoder(settings.image_decoders)
        bot_errors.install(self.tree)

    async def setup_hook(self) -> None:
        if self.http_session is None:
            self.http_session = aiohttp.ClientSession()
        # Now, not inside a member's first command (in a thread: the gateway is not connected yet, but
        # nothing of the loop's should wait on it).
        patterns = await asyncio.to_thread(i18n.preload)
        log.info("texts loaded: %d languages, %d recognition patterns", len(i18n.LANGUAGES), patterns)
        # Before the sync: command and option descriptions are registered in every supported language.
        await self.tree.set_translator(CatalogTranslator())
        for ext in CORE_EXTENSIONS:
            if ext not in self.extensions:  # a login retried after setup_hook began
                await self.load_extension(ext)
        await self.sync_commands_if_changed()
        self.delivery.start()

    async def on_ready(self) -> None:
        if self._ready_logged:
            log.info("gateway ready again (reconnected)")
            return
        self._ready_logged = True
        log.info(
            "videobot ready: %s (%s) in %d guild(s), commands: %s, %.1f s after start",
            self.user,
            self.user.id if self.user else "?",
            len(self.guilds),
            ", ".join(sorted(c.name for c in self.tree.get_commands())),
            time.monotonic() - self.started_monotonic,
        )

    async def close(self) -> None:
        await self.submitter.close()
        await self.intakes.aclose()
        await self.delivery.close()
        if self.http_session is not None:
            await self.http_session.close()
        self.image_decoder.close()
        await super().close()

    # ------------------------------------------------------------------ command sync
    async def _payloads(self, guild: discord.Object | None) -> list[dict[str, Any]]:
        """The commands as ``tree.sync`` sends them, translations included (a changed catalog resyncs)."""
        cmds = self.tree.get_commands(guild=guild)
        translator = self.tree.translator
        if translator is None:
            payloads = [c.to_dict(self.tree) for c in cmds]
        else:
            payloads = [await c.get_translated_payload(self.tree, translator) for c in cmds]
        return sorted(payloads, key=lambda d: (d.get("type", 1), d["name"]))

    async def sync_commands_if_changed(self) -> list[str]:
        """Sync the command tree where its payloads differ from the last sync; returns the scopes synced."""
        state_path = Path(self.settings.data_dir) / SYNC_STATE_FILE
        try:
            state: dict[str, str] = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = {}
        scopes: list[discord.Object | None]
        if self.settings.discord_guild_ids:
            scopes = [discord.Object(gid) for gid in self.settings.discord_guild_ids]
            for scope in scopes:
                self.tree.copy_global_to(guild=scope)
        else:
            scopes = [None]
        synced: list[str] = []
        for scope in scopes:
            payloads = await self._payloads(scope)
            digest = hashlib.sha256(json.dumps(payloads, sort_keys=True).encode()).hexdigest()
            key = f"{self.application_id}:{'global' if scope is None else scope.id}"
            if state.get(key) == digest:
                log.info("commands for %s unchanged; not syncing", key)
                continue
            try:
                await self.tree.sync(guild=scope)
            except discord.HTTPException as exc:  # CommandSyncFailure included
                # Keep serving with the commands Discord already has; the next start tries again.
                log.error("syncing commands to %s failed (%s/%s): %s", key, exc.status, exc.code, exc)
                continue
            except (OSError, aiohttp.ClientError) as exc:  # the network dropped right after login
                log.error(
                    "syncing commands to %s failed (%s); the next start tries again", key, describe_error(exc)
                )
                continue
            state[key] = digest
            synced.append(key)
            log.info("synced %d command(s) to %s", len(payloads), key)
        if synced:
            try:
                state_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = state_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
                tmp.replace(state_path)
            except OSError as exc:
                log.warning(
                    "could not remember the command sync in %s (%s); the next start syncs again",
                    state_path,
                    exc,
                )
        self.synced = True
        return synced


async def run_bot(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT or a fatal error; returns the exit code."""
    assert settings.discord_token is not None
    # PostgreSQL: room for the submit batches written at once (SubmitBatcher) next to the reads.
    db = Database(settings.db_url, pool_size=10)
    queue = JobQueue(db, QueueConfig.from_settings(settings))
    lock = BotLock(db)
    try:
        await lock.acquire()
    except AnotherBotRunning as exc:
        print(f"videobot: {exc}", file=sys.stderr)
        await db.dispose()
        return 2
    use_endpoints(settings.discord_api_base_url, settings.discord_gateway_url)
    # discord.py logs every gateway payload at DEBUG, interaction tokens included: keep that out.
    logging.getLogger("discord.gateway").setLevel(max(logging.INFO, logging.getLogger().level))
    bot = VideoBot(settings, db, queue)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    link = DiscordLink(bot)
    link.install()
    health: HealthServer | None = None
    if settings.health_port:
        health = HealthServer(
            db,
            discord_problem=link.health_problem,
            worker_stale_seconds=max(60.0, settings.lease_seconds),
        )
        try:
            await health.start(settings.health_host, settings.health_port)
        except OSError as exc:
            print(
                f"videobot: cannot listen on {settings.health_host}:{settings.health_port} for /healthz and /metrics "
                f"({exc.strerror}). Set VIDEOBOT_HEALTH_PORT to a free port, or 0 to turn it off.",
                file=sys.stderr,
            )
            await health.stop()
            await lock.release()
            await db.dispose()
            link.uninstall()
            return 2
    maintenance = Maintenance(
        queue,
        lock,
        MaintenanceConfig(
            retention_seconds=settings.result_retention_hours * 3600.0,
            queue_expiry_seconds=settings.queue_expiry_hours * 3600.0,
            lease_seconds=settings.lease_seconds,
        ),
        on_change=bot.delivery.wake,
    )
    keeper = asyncio.create_task(maintenance.run(), name="maintenance")
    runner = asyncio.create_task(link.run(settings.discord_token.get_secret_value()), name="discord-client")
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    code = 0
    try:
        done, _ = await asyncio.wait({runner, stopper, keeper}, return_when=asyncio.FIRST_COMPLETED)
        if keeper in done:
            print(f"videobot: stopped: {maintenance.lock_lost}", file=sys.stderr)
            code = 2
        elif runner in done:
            code = _fatal_stop(runner.exception())
        else:
            log.info("shutting down")
    finally:
        for task in (stopper, keeper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await bot.close()
        if health is not None:
            await health.stop()
        if not runner.done():
            runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner
        await lock.release()
        await db.dispose()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        link.uninstall()
    log.info("videobot stopped (exit status %d)", code)
    return code


def _fatal_stop(exc: BaseException | None) -> int:
    """The Discord client stopped without being asked to: say why; the exit status is never 0."""
    if isinstance(exc, discord.LoginFailure) or (
        isinstance(exc, discord.ConnectionClosed) and exc.code == 4004
    ):
        # 4004: the token was reset while the bot was running.
        print(f"videobot: {TOKEN_REJECTED}", file=sys.stderr)
        return 2
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        print(
            "videobot: Discord refused the gateway intents; videobot needs no privileged ones.",
            file=sys.stderr,
        )
        return 2
    if exc is None:
        log.error("the Discord client stopped unexpectedly")
    elif isinstance(exc, discord.HTTPException | discord.ConnectionClosed):
        log.error("the Discord client stopped: %s", describe_discord_problem(exc))
    else:  # a bug: keep the traceback
        log.error("the Discord client stopped: %s", type(exc).__name__, exc_info=exc)
    return 1


def main(settings: Settings) -> int:
    """Entry point of ``videobot bot`` (after the CLI's pre-flight checks): exit 0 on a signal."""
    try:
        return asyncio.run(run_bot(settings))
    except KeyboardInterrupt:
        return 0
