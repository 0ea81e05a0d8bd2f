"""Logs an owner can read: text lines on a terminal, JSON lines otherwise, no token, no traceback
for an expected network or database error (unless at DEBUG), a traceback for a bug."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from videobot.logs import setup_logging

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def capture(log_format: str, level: str = "INFO") -> io.StringIO:
    stream = io.StringIO()
    setup_logging(level, secrets=[TOKEN], log_format=log_format, stream=stream)
    return stream


def dns_error() -> aiohttp.ClientConnectorDNSError:
    import socket

    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("discord.com", 443, True, True, None, None, None)
    return aiohttp.ClientConnectorDNSError(key, socket.gaierror(-2, "Name or service not known"))


def test_text_format_is_one_readable_line_per_event_without_the_token() -> None:
    out = capture("text")
    logging.getLogger("bot.delivery").info("job %d: posted as message %d (token %s)", 12, 345, TOKEN)
    [line] = out.getvalue().splitlines()
    assert re.fullmatch(
        rf"{STAMP} INFO bot\.delivery job 12: posted as message 345 \(token \[redacted\]\)", line
    )


def test_json_format_is_one_object_per_line_without_the_token() -> None:
    out = capture("json")
    logging.getLogger("bot.delivery").info("job %d: posted, token %s", 12, TOKEN)
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["msg"] == "job 12: posted, token [redacted]" and record["job_id"] == 12
    assert record["level"] == "INFO" and record["logger"] == "bot.delivery"


def test_auto_is_json_when_stderr_is_not_a_terminal() -> None:
    out = capture("auto")  # a StringIO is no terminal
    logging.getLogger("x").warning("hello")
    assert json.loads(out.getvalue())["msg"] == "hello"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_expected_network_error_is_one_line_above_debug(log_format: str) -> None:
    out = capture(log_format)
    try:
        raise dns_error()
    except OSError:
        logging.getLogger("bot.delivery").exception("job 7: posting failed; will retry")
    text = out.getvalue()
    assert "Traceback" not in text and len(text.splitlines()) == 1
    assert "job 7: posting failed; will retry (DNS lookup failed for discord.com)" in text


def test_expected_error_keeps_its_traceback_at_debug() -> None:
    out = capture("text", level="DEBUG")
    try:
        raise dns_error()
    except OSError:
        logging.getLogger("bot.delivery").exception("job 7: posting failed")
    assert "Traceback (most recent call last)" in out.getvalue()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_bug_keeps_its_traceback_with_the_token_redacted(log_format: str) -> None:
    out = capture(log_format)
    try:
        raise KeyError(f"no such key {TOKEN}")
    except KeyError:
        logging.getLogger("bot.app").exception("unexpected error")
    text = out.getvalue()
    if log_format == "json":
        text = json.loads(text)["exc"]
    assert "Traceback (most recent call last)" in text and "KeyError" in text
    assert TOKEN not in out.getvalue() and "[redacted]" in text


def _db_upgrade_output(tmp_path: Path, *, tty: bool, log_format: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDEOBOT_", "DATABASE_URL", "DISCORD_"))}
    env["VIDEOBOT_DATA_DIR"] = str(tmp_path / "data")
    if log_format:
        env["VIDEOBOT_LOG_FORMAT"] = log_format
    cmd = [sys.executable, "-m", "videobot.cli", "db", "upgrade"]
    if not tty:
        return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120).stderr
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            cmd, env=env, cwd=tmp_path, stderr=follower, stdout=subprocess.DEVNULL, timeout=120
        )
        assert proc.returncode == 0
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other side is closed and everything was read
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode().replace("\r\n", "\n")
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)


def test_a_terminal_gets_text_and_a_pipe_gets_json(tmp_path: Path) -> None:
    """The real command: `auto` (the default) picks text on a terminal, JSON in a pipe; settings override."""
    on_tty = _db_upgrade_output(tmp_path, tty=True)
    assert re.search(rf"^{STAMP} INFO alembic\.runtime\.migration ", on_tty, re.M), on_tty
    assert "{" not in on_tty
    piped = _db_upgrade_output(tmp_path, tty=False)
    assert piped and all(json.loads(line)["logger"] for line in piped.splitlines())
    forced = _db_upgrade_output(tmp_path, tty=True, log_format="JSON")
    assert all(json.loads(line) for line in forced.splitlines() if line)


def test_retry_delays_double_up_to_a_minute_and_start_over_once_connected() -> None:
    from bot.connection import Backoff

    backoff = Backoff()
    assert [backoff.delay() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    backoff.reset()
    assert backoff.delay() == 1
