"""How a Discord HTTP failure is classified and logged (shared by every delivery step)."""

from __future__ import annotations

import asyncio

import aiohttp
import discord

#: Failures that may succeed later (after discord.py's own retries): server errors, network trouble.
TRANSIENT = (discord.DiscordServerError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


def http_reason(exc: discord.HTTPException) -> str:
    """``status/code`` for a log line (never the response body, which may echo user text)."""
    return f"{exc.status}/{exc.code}"
