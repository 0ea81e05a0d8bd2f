"""`videobot run`, the main job, end to end: the real process against the fake Discord.

It migrates an empty database, picks the tiny model on a machine without a GPU (with a warning),
serves /healthz, delivers a /video, restarts its worker after a kill -9, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.fakediscord import FakeDiscord

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.timeout(300)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_until(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def worker_children(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    found = []
    for kid in kids:
        try:  # a killed worker is a zombie until the supervisor reaps it
            if kid.status() != psutil.STATUS_ZOMBIE and "worker" in " ".join(kid.cmdline()):
                found.append(kid)
        except psutil.Error:
            continue
    return found


async def test_run_serves_restarts_its_worker_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "run.log"
    async with FakeDiscord() as fd:
        guild = fd.add_guild("Run Test")
        channel = fd.add_channel(guild.id, "videos")
        alice = fd.add_member(guild.id, name="alice")
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("VIDEOBOT_", "DISCORD_", "DATABASE_URL"))
        }
        env.update(
            fd.env(),
            VIDEOBOT_DATA_DIR=str(tmp_path / "data"),  # empty: `run` must create and migrate the database
            VIDEOBOT_GUILD_IDS=str(guild.id),
            VIDEOBOT_HEALTH_PORT=str(port),
            VIDEOBOT_POLL_SECONDS="0.2",
            VIDEOBOT_LOG_LEVEL="DEBUG",
            CUDA_VISIBLE_DEVICES="",  # `auto` must fall back to the tiny model
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
        )
        with log_path.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "videobot.cli", "run", cwd=tmp_path, env=env, stdout=log, stderr=log
            )
        try:
            await fd.wait_until_ready(60)
            await wait_until(lambda: "ready: model tiny" in log_path.read_text(), 120, "the worker")
            text = log_path.read_text()
            assert "No CUDA GPU found: using the built-in `tiny` model" in text

            async with aiohttp.ClientSession() as http:

                async def healthy() -> bool:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                        return r.status == 200

                await wait_until(healthy, 30, "/healthz to say ok")
                async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    assert "videobot_ack_latency_seconds_count" in await r.text()

            async def video_posted(n: int) -> None:
                i = await fd.slash(guild.id, channel, alice, "video", options={"prompt": f"a fox, take {n}"})
                await i.acknowledged(3)
                await wait_until(
                    lambda: (
                        sum(1 for m in fd.messages(channel) if m.get("attachments") and not m.get("deleted"))
                        >= n
                    ),
                    90,
                    f"video {n}",
                )

            await video_posted(1)
            [worker] = worker_children(proc.pid)
            worker.kill()
            await wait_until(
                lambda: [w for w in worker_children(proc.pid) if w.pid != worker.pid], 60, "a new worker"
            )
            assert "worker process exited with code -9; restarting" in log_path.read_text()
            await video_posted(2)

            [worker] = worker_children(proc.pid)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 90) == 0, log_path.read_text()[-3000:]
            assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
            assert "Traceback" not in log_path.read_text()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_run_stops_with_the_bots_exit_status_when_discord_rejects_the_token(tmp_path: Path) -> None:
    """A fatal stop of the bot ends `videobot run` with its non-zero status, and its worker with it."""
    async with FakeDiscord(token="the-right-token") as fd:
        strip = ("VIDEOBOT_", "DISCORD_", "DATABASE_URL")
        env = {k: v for k, v in os.environ.items() if not k.startswith(strip)}
        env.update(
            fd.env(),
            DISCORD_TOKEN="a-token-that-was-reset",
            VIDEOBOT_DATA_DIR=str(tmp_path / "data"),
            VIDEOBOT_HEALTH_PORT="0",
            VIDEOBOT_MODEL="tiny",
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "videobot.cli",
            "run",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 120)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = out.decode()
    assert proc.returncode == 2, text[-3000:]
    assert "Discord rejected DISCORD_TOKEN" in text and "Reset Token" in text
    assert "Traceback" not in text and "a-token-that-was-reset" not in text
    data_dir = str(tmp_path / "data")

    def our_worker(p: psutil.Process) -> bool:
        try:
            return "worker" in p.cmdline() and p.environ().get("VIDEOBOT_DATA_DIR") == data_dir
        except psutil.Error:
            return False

    # The supervisor stopped its worker before `run` exited (nothing left behind, reparented or not).
    assert not [p for p in psutil.process_iter() if our_worker(p)]
