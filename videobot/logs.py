"""Logging: configured once at the entry point; one line per event; secrets never logged.

Two formats: readable text (``2026-11-30 23:10:01 INFO bot.delivery job 12: posted ...``) for a
person at a terminal, JSON lines for log collectors. ``VIDEOBOT_LOG_FORMAT=auto`` picks text when
stderr is a terminal. Tracebacks are for bugs: an expected operational error (the network, a
database that went away) logged with its exception becomes one line naming the cause, unless the
level is DEBUG.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import sys
import time
from typing import TextIO

import aiohttp

# Discord bot tokens (three base64url parts) and interaction/webhook tokens in URLs.
_SECRET_PATTERNS = [
    re.compile(r"[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}"),
    re.compile(r"(/(?:interactions/\d+|webhooks/\d+)/)[A-Za-z0-9_.-]{20,}"),
    re.compile(r"(Bot |Bearer )[A-Za-z0-9_.-]{10,}"),
    # Interaction tokens inside payload dicts/JSON that libraries log at DEBUG.
    re.compile(r"""(['"]token['"]:\s*['"])[A-Za-z0-9_.-]{20,}"""),
]

#: Exception classes (by name, so this module needs neither discord nor sqlalchemy) that mean
#: "something outside us is down or slow", never a bug in videobot.
_OPERATIONAL_NAMES = frozenset(
    {
        "ConnectionClosed",  # discord: the gateway socket closed
        "GatewayNotFound",  # discord
        "DiscordServerError",  # discord: a 5xx after discord.py's own retries
        "OperationalError",  # sqlalchemy / sqlite3 / asyncpg: the database is unreachable or locked
        "InterfaceError",  # asyncpg / sqlalchemy: the connection is closed
        "DisconnectionError",  # sqlalchemy
    }
)


def is_operational(exc: BaseException) -> bool:
    """True for errors that come from the outside world (network, a server's 5xx, a lost database)."""
    if isinstance(exc, OSError | aiohttp.ClientError | asyncio.TimeoutError):
        return True
    return any(cls.__name__ in _OPERATIONAL_NAMES for cls in type(exc).__mro__)


def describe_error(exc: BaseException) -> str:
    """A short human reason for a network-ish error: ``DNS lookup failed for discord.com``."""
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, socket.gaierror):
        return f"DNS lookup failed for {exc.host}"  # ClientConnectorDNSError (aiohttp >= 3.10) included
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        host = getattr(exc, "host", "the server")
        return f"TLS with {host} failed: {_first_line(exc)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        # asyncio's strerror is "Connect call failed (...)"; the errno says why ("connection refused").
        why = (
            (os.strerror(err.errno) if err.errno else err.strerror) or _first_line(err) or type(err).__name__
        )
        return f"cannot connect to {exc.host}:{exc.port}: {why.lower()}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"websocket handshake refused ({exc.status} {exc.message})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status} {exc.message}"
    if isinstance(exc, asyncio.TimeoutError):
        return _first_line(exc) or "no answer in time"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = _first_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


class QuietOperationalErrors(logging.Filter):
    """Folds the traceback of an expected operational error into the message, above DEBUG.

    ``log.exception("metrics: database unreachable")`` for an ``OperationalError`` then reads
    ``metrics: database unreachable (OperationalError: unable to open database file)``. Anything
    else (a bug) keeps its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not is_operational(exc) or logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        record.msg = f"{record.getMessage()} ({describe_error(exc)})"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


class RedactingFilter(logging.Filter):
    """Replaces known secrets, and anything shaped like a Discord token, with ``[redacted]``."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = [s for s in (secrets or []) if s and len(s) >= 8]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        for pat in _SECRET_PATTERNS:
            text = pat.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (+ job_id when the message names a job)."""

    _job = re.compile(r"\bjob #?(\d+)")

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        m = self._job.search(out["msg"])
        if m:
            out["job_id"] = int(m.group(1))
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-11-30 23:10:01 INFO bot.delivery job 12: posted ...``: local time, one line per event.

    A traceback (a bug, or anything at DEBUG) follows on the next lines, as Python prints it.
    """

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        # Keep one event on one line even when a message carries a newline (an exception's text).
        message = record.getMessage().replace("\n", " | ")
        line = f"{stamp} {record.levelname} {record.name} {message}"
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        return line


def use_text(log_format: str, stream: TextIO) -> bool:
    """``text`` / ``json``, or ``auto``: text when ``stream`` is a terminal."""
    if log_format == "auto":
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())
    return log_format == "text"


def setup_logging(
    level: str = "INFO",
    *,
    secrets: list[str] | None = None,
    process: str = "videobot",
    log_format: str = "auto",
    stream: TextIO | None = None,
) -> None:
    """Configure the root logger once: text or JSON lines on stderr, secrets redacted."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter() if use_text(log_format, stream) else JsonFormatter())
    handler.addFilter(QuietOperationalErrors())  # before redaction: it rewrites the message
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter that is not ours stays at INFO or above even at DEBUG, except discord's gateway
    # payloads, which are useful but carry interaction tokens: the filter redacts those.
    for noisy in ("asyncio", "aiosqlite", "PIL", "urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
