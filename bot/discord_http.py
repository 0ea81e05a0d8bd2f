"""How a Discord HTTP failure is classified and logged (shared by delivery and the commands)."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import aiohttp
import discord


class AnswerLost(Exception):
    """A message create got a server error: Discord may have made the message before it failed."""

    def __init__(self, status: int) -> None:
        super().__init__(f"{status}: the server failed after receiving the message")
        self.status = status


#: Failures that may succeed later (after discord.py's own retries): server errors, network trouble.
TRANSIENT = (discord.DiscordServerError, aiohttp.ClientError, asyncio.TimeoutError, OSError, AnswerLost)


def http_reason(exc: discord.HTTPException) -> str:
    """``status/code`` for a log line (never the response body, which may echo user text)."""
    return f"{exc.status}/{exc.code}"


class SendOnce:
    """The session of a webhook whose POSTs must not be sent again blindly.

    discord.py resends a webhook request after a 5xx, but an interaction follow-up has no nonce: when
    Discord made the message and then failed (a lost answer), the resend posts it a second time. Through
    this session a POST with a server error raises ``AnswerLost`` instead, so the caller can look for the
    message before posting again. Other methods (an ``@original`` read or edit) go through unchanged.
    """

    def __init__(self, session: Any) -> None:
        self._session = session

    def request(self, method: str, url: Any, **kwargs: Any) -> Any:
        context = self._session.request(method, url, **kwargs)
        return _Checked(context) if method == "POST" else context


class _Checked:
    def __init__(self, context: Any) -> None:
        self._context = context

    async def __aenter__(self) -> aiohttp.ClientResponse:
        response = await self._context.__aenter__()
        if response.status >= 500:
            await self._context.__aexit__(None, None, None)
            raise AnswerLost(response.status)
        return response

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._context.__aexit__(exc_type, exc, tb)
