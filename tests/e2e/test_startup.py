"""`videobot bot` start-up problems: clear messages and exit code 2, never a traceback."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

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
