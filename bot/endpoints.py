"""Point discord.py at another Discord: a REST proxy, or the fake server the end-to-end tests run."""

from __future__ import annotations

import logging
import re
from typing import Any

import discord.http
import yarl
from discord.gateway import DiscordWebSocket

log = logging.getLogger(__name__)

_VERSION_SUFFIX = re.compile(r"/v\d+$")
_original_set_api_version: Any = None


def use_endpoints(api_base: str | None, gateway: str | None) -> None:
    """Send REST calls to ``api_base`` (e.g. ``http://127.0.0.1:8080/api/v10``) and connect the gateway to ``gateway``.

    ``None`` keeps Discord's own endpoint. Call it before ``client.start()``; it changes process-wide
    class attributes, which is what discord.py reads on every request and connect.
    """
    global _original_set_api_version
    if api_base:
        base = api_base.rstrip("/")
        # Every REST call (webhooks and interaction callbacks included) builds its URL from Route.BASE.
        discord.http.Route.BASE = base
        # _set_api_version() hard-codes discord.com into Route.BASE; keep our host and only swap the version.
        if _original_set_api_version is None:
            _original_set_api_version = discord.http._set_api_version

        def _set_api_version(value: int) -> None:
            _original_set_api_version(value)
            discord.http.Route.BASE = (
                _VERSION_SUFFIX.sub(f"/v{value}", base) if _VERSION_SUFFIX.search(base) else base
            )

        discord.http._set_api_version = _set_api_version
        log.info("Discord REST base set to %s", base)
    if gateway:
        # Used for the first connect and after INVALID_SESSION; resumes go to READY's resume_gateway_url.
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
        log.info("Discord gateway set to %s", gateway)
