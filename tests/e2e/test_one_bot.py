"""One bot per database, and what the bot does when no worker ever comes: real processes, fake Discord."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from .harness import BotHarness, assert_schema_clean, register, unregister

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def h(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[BotHarness]:
    # No worker at all, and jobs expire after 7 seconds in the queue.
    async with BotHarness(
        tmp_path_factory.mktemp(f"e2e-onebot-{request.param}"),
        db=request.param,
        bot_env={"VIDEOBOT_QUEUE_EXPIRY_HOURS": "0.002"},
    ) as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)


async def test_a_second_bot_on_the_same_database_refuses_to_start(h: BotHarness) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "videobot.cli",
        "bot",
        env=h._env({}),
        cwd=str(h.tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 2, text
    assert "Another videobot bot is already running against this database" in text
    assert "Run exactly one `videobot bot`" in text and "Traceback" not in text
    assert h.bot.running  # the first one is untouched


async def test_a_job_no_worker_takes_is_cancelled_refunded_and_the_member_told(h: BotHarness) -> None:
    user = h.member_id
    interaction = await h.slash(user, "video", prompt="a lighthouse in a storm")
    await interaction.acknowledged(3)
    deadline = asyncio.get_running_loop().time() + 20
    while not (jobs := await h.jobs(user)):
        assert asyncio.get_running_loop().time() < deadline, "no job was queued"
        await asyncio.sleep(0.1)
    job = await h.wait_job(jobs[0].id, "cancelled", timeout=40)
    assert job.error_code == "expired"
    notice = await h.wait_for(
        lambda: next(
            (m for m in h.messages() if f"<@{user}>" in m["content"] and "was cancelled" in m["content"]),
            None,
        ),
        20,
        "the expiry notice",
    )
    assert "waited more than" in notice["content"] and "refunded" in notice["content"]
    assert await h.balance_used(user) == 0
