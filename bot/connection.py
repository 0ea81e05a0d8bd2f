"""Staying connected to Discord: log in and reconnect with capped exponential backoff.

Network trouble at start (login) or later (the gateway) is retried for as long as it lasts, with
one log line per attempt (``cannot reach Discord (DNS lookup failed for discord.com); retrying in
8 s``) and the reason on ``/healthz``. A token Discord rejects is not retried: ``run_bot`` stops.

discord.py reconnects the gateway itself (and RESUMEs); we only give it our backoff (capped, reset
once connected) and turn its "Attempting a reconnect" log record, which carries a traceback, into
our one line. Both hooks are process-wide, like ``bot.endpoints``; ``uninstall()`` undoes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import discord
import discord.client
from discord.ext import commands

from videobot.logs import describe_error

log = logging.getLogger(__name__)

#: Seconds allowed for the login requests (``/users/@me``, ``/oauth2/applications/@me``) before
#: the attempt counts as failed; aiohttp's own default would wait five minutes.
LOGIN_TIMEOUT = 30.0


class Backoff:
    """1, 2, 4, ... seconds up to ``cap``; ``reset()`` once connected. discord.py calls ``delay()``."""

    def __init__(self, base: float = 1.0, cap: float = 60.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def delay(self) -> float:
        value = min(self.cap, self.base * 2**self.failures)
        self.failures += 1
        return value

    def reset(self) -> None:
        self.failures = 0


def is_retryable(exc: BaseException) -> bool:
    """Network trouble or Discord being down: worth retrying. A 4xx (a rejected token) is not."""
    if isinstance(exc, discord.LoginFailure | discord.PrivilegedIntentsRequired):
        return False
    if isinstance(exc, discord.HTTPException):
        # 5xx after discord.py's own retries; 429 without `Via` is Cloudflare's temporary ban.
        return isinstance(exc, discord.DiscordServerError) or exc.status == 429
    return isinstance(
        exc,
        OSError
        | aiohttp.ClientError
        | asyncio.TimeoutError
        | discord.GatewayNotFound
        | discord.ConnectionClosed,
    )


def describe(exc: BaseException | None) -> str:
    """Why Discord cannot be reached, in a few words."""
    if exc is None:
        return "connection lost"
    if isinstance(exc, discord.ConnectionClosed):
        return f"the gateway closed the connection (code {exc.code})"
    if isinstance(exc, discord.GatewayNotFound):
        return "Discord did not give a gateway address"
    if isinstance(exc, discord.HTTPException):
        return f"Discord answered {exc.status} {exc.response.reason}"
    return describe_error(exc)


class _DiscordClientLog(logging.Filter):
    """On the ``discord.client`` logger: our one line instead of its reconnect traceback."""

    def __init__(self, link: DiscordLink) -> None:
        super().__init__()
        self.link = link
        self.logged_in = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "logging in using static token":
            first, self.logged_in = not self.logged_in, True
            return first  # once, not at every login retry
        if isinstance(record.msg, str) and record.msg.startswith("Attempting a reconnect in"):
            exc = record.exc_info[1] if record.exc_info else None
            delay = float(record.args[0]) if isinstance(record.args, tuple) and record.args else 0.0
            self.link.retrying(exc, delay)
            return False
        return True


class DiscordLink:
    """The bot's connection to Discord: logs in with retries, and knows why it is down for /healthz."""

    def __init__(self, bot: commands.Bot, *, max_backoff: float = 60.0) -> None:
        self.bot = bot
        self.backoff = Backoff(cap=max_backoff)
        self.problem: str | None = None  # the last reason Discord could not be reached
        self.failures = 0  # since the last successful connection
        self._filter = _DiscordClientLog(self)
        self._saved_backoff: Any = None

    # ------------------------------------------------------------------ state
    def connected(self) -> bool:
        bot = self.bot
        return bot.is_ready() and not bot.is_closed() and bot.ws is not None and bot.ws.open

    def health_problem(self) -> str | None:
        """None while connected; else ``discord: not connected (<why>, retrying)``."""
        if self.connected():
            return None
        if self.problem:
            return f"discord: not connected ({self.problem}, retrying)"
        return "discord: not connected (connecting)"

    def retrying(self, exc: BaseException | None, delay: float) -> None:
        """Log one line for a failed attempt and remember the reason."""
        reason = describe(exc)
        self.problem = f"cannot reach Discord: {reason}"
        self.failures += 1
        debug = logging.getLogger().isEnabledFor(logging.DEBUG)
        log.warning(
            "cannot reach Discord (%s); retrying in %.0f s", reason, delay, exc_info=exc if debug else None
        )

    async def _on_connected(self) -> None:
        if self.failures:
            log.info("connected to Discord again after %d failed attempt(s)", self.failures)
        self.failures = 0
        self.problem = None
        self.backoff.reset()

    # ------------------------------------------------------------------ hooks
    def install(self) -> None:
        """Give discord.py our backoff and log line; listen for (re)connections."""
        self._saved_backoff = discord.client.ExponentialBackoff
        # Client.connect() builds its backoff from this module global when it starts.
        discord.client.ExponentialBackoff = lambda *args, **kwargs: self.backoff  # type: ignore[assignment,misc]
        logging.getLogger("discord.client").addFilter(self._filter)
        self.bot.add_listener(self._on_connected, "on_ready")
        self.bot.add_listener(self._on_connected, "on_resumed")

    def uninstall(self) -> None:
        if self._saved_backoff is not None:
            discord.client.ExponentialBackoff = self._saved_backoff  # type: ignore[misc]
            self._saved_backoff = None
        logging.getLogger("discord.client").removeFilter(self._filter)

    # ------------------------------------------------------------------ running
    async def run(self, token: str) -> None:
        """Log in (retrying while Discord cannot be reached), then stay connected to the gateway."""
        await self.login(token)
        await self.bot.connect(reconnect=True)

    async def login(self, token: str) -> None:
        while True:
            try:
                await self._login_once(token)
                return
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                failure = exc
            # static_login() opens a new HTTP session on every call: close this one and its connector.
            await self.bot.http.close()
            self.bot.http.connector = discord.utils.MISSING
            delay = self.backoff.delay()
            self.retrying(failure, delay)
            await asyncio.sleep(delay)

    async def _login_once(self, token: str) -> None:
        task = asyncio.create_task(self.bot.login(token), name="discord-login")
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=LOGIN_TIMEOUT)
                if done:
                    return task.result()
                # Still waiting for Discord's first answers (not in our setup_hook): give up this try.
                if self.bot.application is None:
                    raise TimeoutError(f"no answer from Discord in {LOGIN_TIMEOUT:.0f} s")
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
