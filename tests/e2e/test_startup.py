"""`videobot bot` start-up problems: clear messages and exit code 2, never a traceback; Discord
unreachable at start or later: retried with backoff, one line per attempt, the reason on /healthz."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.harness import BotHarness
from tests.fakediscord import FakeDiscord
from videobot.migrate import upgrade

pytestmark = pytest.mark.asyncio(loop_scope="function")


async def run_bot(env: dict[str, str], cwd: Path, timeout: float = 30.0) -> tuple[int, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIDEOBOT_", "DISCORD_")) and k != "DATABASE_URL"
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "videobot.cli",
        "bot",
        env={**clean, "VIDEOBOT_HEALTH_PORT": "0", **env},
        cwd=str(cwd),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_missing_token_explains_where_to_get_one(tmp_path: Path) -> None:
    code, out = await run_bot({"VIDEOBOT_DATA_DIR": str(tmp_path)}, tmp_path)
    assert code == 2
    assert "DISCORD_TOKEN is not set" in out and "https://discord.com/developers/applications" in out
    assert "Reset Token" in out and "privileged" in out
    assert "Traceback" not in out


async def test_rejected_token_is_a_clear_message(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'videobot.db'}"
    await asyncio.to_thread(upgrade, url)
    async with FakeDiscord(token="the-right-token") as fd:
        env = {
            **fd.env(),
            "DISCORD_TOKEN": "a-wrong-token",
            "DATABASE_URL": url,
            "VIDEOBOT_DATA_DIR": str(tmp_path),
        }
        code, out = await run_bot(env, tmp_path)
    assert code == 2, out
    assert "Discord rejected DISCORD_TOKEN" in out and "Reset Token" in out
    assert "Traceback" not in out and "a-wrong-token" not in out


async def test_unmigrated_database_says_how_to_fix_it(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    code, out = await run_bot(
        {"DISCORD_TOKEN": "x" * 30, "DATABASE_URL": url, "VIDEOBOT_DATA_DIR": str(tmp_path)}, tmp_path
    )
    assert code == 2 and "videobot db upgrade" in out and "Traceback" not in out


# ---------------------------------------------------------------------------- Discord unreachable
RETRY_LINE = re.compile(r"cannot reach Discord \((?P<why>[^)]*)\); retrying in (?P<delay>\d+) s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def healthz(port: int) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
        return r.status, await r.json()


async def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize(
    ("host", "log_format", "why"),
    [
        ("127.0.0.1:{closed}", "json", "cannot connect to 127.0.0.1:{closed}: connection refused"),
        ("discord.invalid", "text", "DNS lookup failed for discord.invalid"),
    ],
)
async def test_unreachable_discord_is_retried_with_backoff_and_reported(
    host: str, log_format: str, why: str, tmp_path: Path
) -> None:
    closed, health = free_port(), free_port()  # nothing listens on `closed`
    host, why = host.format(closed=closed), why.format(closed=closed)
    url = f"sqlite+aiosqlite:///{tmp_path / 'videobot.db'}"
    await asyncio.to_thread(upgrade, url)
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("VIDEOBOT_", "DISCORD_", "DATABASE_URL"))
    }
    env = {
        **clean,
        "DISCORD_TOKEN": "the-token-of-a-new-owner",
        "DISCORD_API_BASE_URL": f"http://{host}/api/v10",
        "DISCORD_GATEWAY_URL": f"ws://{host}/gateway",
        "DATABASE_URL": url,
        "VIDEOBOT_DATA_DIR": str(tmp_path),
        "VIDEOBOT_HEALTH_PORT": str(health),
        "VIDEOBOT_LOG_FORMAT": log_format,
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "videobot.cli", "bot", env=env, cwd=str(tmp_path), stdout=log, stderr=log
        )
    try:
        retries = await wait_for(
            lambda: (found := list(RETRY_LINE.finditer(log_path.read_text()))) and len(found) >= 3 and found,
            60,
            "three retry lines",
        )
        assert [m["why"] for m in retries[:3]] == [why] * 3
        delays = [int(m["delay"]) for m in retries[:3]]
        assert delays[0] < delays[1] < delays[2], delays
        status, body = await healthz(health)
        assert status == 503
        assert f"discord: not connected (cannot reach Discord: {why}, retrying)" in body["problems"], body
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log_path.read_text()
    assert "Traceback" not in text and "the-token-of-a-new-owner" not in text
    retry_lines = [line for line in text.splitlines() if "cannot reach Discord" in line]
    if log_format == "text":  # one readable line per event: "2026-11-30 23:10:01 WARNING bot.connection ..."
        stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
        assert all(
            re.match(rf"{stamp} WARNING bot\.connection cannot reach Discord \(", ln) for ln in retry_lines
        )
        assert re.search(rf"^{stamp} INFO bot\.app videobot stopped \(exit status 0\)$", text, re.M), text
    else:
        records = [json.loads(line) for line in text.splitlines()]
        assert [r["msg"] for r in records if r["logger"] == "bot.connection"][:1] == [
            f"cannot reach Discord ({why}); retrying in 1 s"
        ]
        assert all("exc" not in r for r in records)


async def test_discord_going_away_and_coming_back(tmp_path: Path) -> None:
    """The fake Discord stops listening after login: the bot retries, /healthz says why, then it resumes."""
    health = free_port()
    async with BotHarness(
        tmp_path,
        worker=True,
        bot_env={"VIDEOBOT_HEALTH_PORT": str(health)},
        common_env={"VIDEOBOT_LOG_LEVEL": "INFO"},
    ) as h:

        async def healthy() -> bool:
            return (await healthz(health))[0] == 200

        await wait_for(healthy, 30, "/healthz 200 before the outage")
        port = h.fd.port
        await h.fd.close()
        await wait_for(
            lambda: len(RETRY_LINE.findall(h.bot.log(since_start=True))) >= 2, 30, "two retry lines"
        )
        status, body = await healthz(health)
        assert status == 503
        assert (
            f"discord: not connected (cannot reach Discord: cannot connect to 127.0.0.1:{port}: connection refused, "
            "retrying)" in body["problems"]
        ), body
        await h.fd.start(port)
        await wait_for(healthy, 60, "/healthz 200 after Discord came back")
        assert "connected to Discord again after" in h.bot.log(since_start=True)
        assert h.bot.running

        i = await h.slash(h.member_id, "video", prompt="a fox after the outage")
        await i.acknowledged(3)
        posts = await h.wait_for(
            lambda: [m for m in h.messages() if m.get("attachments")], 90, "the video after the outage"
        )
        assert posts[0]["attachments"][0]["filename"].endswith(".mp4")
        assert "Traceback" not in h.bot.log(since_start=True)
        assert await h.stop_bot() == 0
