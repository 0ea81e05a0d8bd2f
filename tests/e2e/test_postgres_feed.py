"""The bot's change feed on PostgreSQL: a completion whose commit lands late is still posted at once.

A transaction stamps ``updated_at`` when its statement runs, but the bot sees it only at commit. Here
a worker's ``complete`` holds its transaction open 5 s after stamping while another member's job
moves the bot's feed cursor past that stamp plus the feed's 2 s overlap; the bot (polling only every
30 s here, its sweep every 60 s) must post the video within 2 s of the commit: the NOTIFY sent at
commit names the job. The same through the server's unix socket (``?host=/var/run/postgresql``): the
LISTEN connection reaches the server the way the engine does. Runs when ``VIDEOBOT_TEST_POSTGRES_URL``
is set, else skipped.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncSession

from bot.delivery.feed import LISTEN_APPLICATION_NAME
from generator.encode import encode_mp4
from tests.helpers import PG_ENV, PG_SKIP, pg_exec
from videobot.db import Database, asyncpg_connect_args
from videobot.jobs import JobQueue, QueueConfig, ResultData

from .harness import BotHarness, register, unregister

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOLD_SECONDS = 5.0
T = TypeVar("T")


class SlowCommitDatabase(Database):
    """Every transaction (``transaction()`` and ``run_sync``) stays open ``HOLD_SECONDS`` after its
    last statement, then commits."""

    held_at: float | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._writer() as session, session.begin():
            yield session
            self.held_at = time.monotonic()
            await asyncio.sleep(HOLD_SECONDS)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        async with self.engine.begin() as conn:
            result = await conn.run_sync(fn, *args)
            self.held_at = time.monotonic()
            await asyncio.sleep(HOLD_SECONDS)
            return result


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    async with BotHarness(
        tmp_path_factory.mktemp("e2e-pg-feed"), db="postgresql", bot_env={"VIDEOBOT_POLL_SECONDS": "30"}
    ) as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)


async def _queued(h: BotHarness, user_id: int, prompt: str) -> int:
    interaction = await h.slash(user_id, "video", prompt=prompt)
    await interaction.acknowledged(3)
    text = await h.wait_for(lambda: (interaction.original or {}).get("content"), 30, "the answer")
    assert text.startswith("Queued as job #"), text
    return int(text.removeprefix("Queued as job #").split()[0].rstrip(".:,"))


async def _socket_admin_url() -> str:
    """The test server's admin URL over its unix socket (``?host=<directory>``), or skip."""
    admin = os.environ.get(PG_ENV)
    if not admin:
        pytest.skip(PG_SKIP)
    import asyncpg

    conn = await asyncpg.connect(**asyncpg_connect_args(admin))
    try:
        dirs = await conn.fetchval("SHOW unix_socket_directories")
        port = await conn.fetchval("SHOW port")
    finally:
        await conn.close()
    directory = next((d.strip() for d in dirs.split(",") if d.strip()), "")
    if not directory.startswith("/") or not (Path(directory) / f".s.PGSQL.{port}").exists():
        pytest.skip(f"the PostgreSQL server's unix socket is not on this machine ({dirs!r})")
    u = make_url(admin)
    return URL.create(
        u.drivername, u.username, u.password, None, int(port), u.database, {**u.query, "host": directory}
    ).render_as_string(hide_password=False)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def on_socket(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    """The bot connected through the server's unix socket (``DATABASE_URL=...?host=/var/run/postgresql``)."""
    async with BotHarness(
        tmp_path_factory.mktemp("e2e-pg-feed-socket"),
        db="postgresql",
        pg_admin_url=await _socket_admin_url(),
        bot_env={"VIDEOBOT_POLL_SECONDS": "30"},
    ) as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)


async def test_a_completion_committed_5_s_after_its_stamp_is_posted_within_2_s(h: BotHarness) -> None:
    await _late_commit_is_posted_promptly(h)


async def test_over_a_unix_socket_the_listener_connects_the_same_way_as_the_engine(
    on_socket: BotHarness,
) -> None:
    # The LISTEN connection once dropped the URL's ?host=/socket/dir and ?ssl=...: on a server reached only
    # that way it never connected, and a late commit waited for the minute's sweep.
    h = on_socket
    assert "host=" in h.db_url and "@:" in h.db_url  # no TCP host at all
    await h.wait_for(
        lambda: "listening for job changes" in h.bot.log(since_start=True) or None, 30, "the listener"
    )
    assert h.db is not None
    async with h.db.sessionmaker() as s:
        listeners = (
            await s.execute(
                text(
                    "SELECT client_addr IS NULL AS local_socket FROM pg_stat_activity "
                    "WHERE application_name = :name AND datname = current_database()"
                ),
                {"name": LISTEN_APPLICATION_NAME},
            )
        ).all()
    assert [r.local_socket for r in listeners] == [True], "the listener is not on the unix socket"
    await _late_commit_is_posted_promptly(h)


async def _late_commit_is_posted_promptly(h: BotHarness) -> None:
    assert h.queue is not None
    job_id = await _queued(h, h.member_id, "a slow disk")
    claim = await h.queue.claim("fake-worker")
    assert claim is not None and claim.job_id == job_id
    frames = np.random.default_rng(1).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8)
    enc = await asyncio.to_thread(encode_mp4, frames, 8)
    result = ResultData(
        video=enc.data, poster=enc.poster, width=enc.width, height=enc.height,
        num_frames=enc.num_frames, fps=enc.fps, duration_s=enc.duration_s, generation_seconds=1.0,
    )  # fmt: skip
    slow = SlowCommitDatabase(h.db_url)
    try:
        completing = asyncio.create_task(JobQueue(slow, QueueConfig()).complete(claim, result))
        while slow.held_at is None:
            await asyncio.sleep(0.01)
        stamped = slow.held_at
        await asyncio.sleep(2.5)
        # Meanwhile another member's job changes: the bot reads its feed and its cursor passes the stamp + 2 s.
        await _queued(h, h.other_id, "a quick one")
        assert time.monotonic() - stamped < HOLD_SECONDS, "the other job came too late to move the cursor"
        assert await completing == "succeeded"
        committed = time.monotonic()
    finally:
        await slow.dispose()
    name = f"videobot-{job_id}.mp4"
    post = await h.wait_for(
        lambda: next(
            (m for m in h.messages() if m["attachments"] and m["attachments"][0]["filename"] == name), None
        ),
        30,
        "the video post",
    )
    posted_after = time.monotonic() - committed
    assert posted_after < 2.0, f"posted {posted_after:.1f} s after the commit"
    job = await h.wait_job(job_id, "delivered", 10)
    assert job.result_message_id == int(post["id"])
    assert "listening for job changes" in h.bot.log(since_start=True)


async def test_the_listener_reconnects_after_its_connection_is_killed(h: BotHarness) -> None:
    assert h.queue is not None and h._pg_admin is not None
    await pg_exec(
        h._pg_admin,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE application_name = 'videobot-feed' AND datname = '{h._pg_name}'",
    )
    await h.wait_for(
        lambda: "connection lost; reconnecting" in h.bot.log(since_start=True), 10, "the loss noticed"
    )
    deadline = time.monotonic() + 15
    while h.bot.log(since_start=True).count("listening for job changes") < 2:
        assert time.monotonic() < deadline, h.bot.tail(20)
        await asyncio.sleep(0.1)
    job_id = await _queued(h, h.mod_id, "after the reconnect")
    await asyncio.sleep(0.5)  # the bot's own wake-up for the submit is over
    claims = [await h.queue.claim("fake-worker") for _ in range(2)]  # the first test's other job too
    claim = next(c for c in claims if c is not None and c.job_id == job_id)
    frames = np.random.default_rng(2).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8)
    enc = await asyncio.to_thread(encode_mp4, frames, 8)
    result = ResultData(
        video=enc.data, poster=enc.poster, width=enc.width, height=enc.height,
        num_frames=enc.num_frames, fps=enc.fps, duration_s=enc.duration_s, generation_seconds=1.0,
    )  # fmt: skip
    assert await h.queue.complete(claim, result) == "succeeded"
    committed = time.monotonic()
    name = f"videobot-{job_id}.mp4"
    await h.wait_for(
        lambda: (
            any(m["attachments"] and m["attachments"][0]["filename"] == name for m in h.messages()) or None
        ),
        30,
        "the video post",
    )
    assert time.monotonic() - committed < 2.0  # woken by NOTIFY: the bot polls only every 30 s here


async def test_the_listener_keeps_the_urls_tls_and_host_options() -> None:
    # What the LISTEN connection is opened with (no server needed): the engine's reading of the URL.
    url = "postgresql+asyncpg://u:p@db.example:6543/v?ssl=require&prepared_statement_cache_size=0"
    assert asyncpg_connect_args(url) == {
        "host": "db.example", "port": 6543, "user": "u", "password": "p", "database": "v", "ssl": "require",
    }  # fmt: skip
    hosts = asyncpg_connect_args("postgresql+asyncpg://u@/v?host=a:5432&host=b:5433")
    assert (hosts["host"], hosts["port"]) == (["a", "b"], [5432, 5433])
