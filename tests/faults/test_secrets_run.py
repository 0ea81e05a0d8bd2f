"""`videobot run` (migrations, the bot, a supervised worker) at DEBUG: no bot token and no interaction token in any line.

The bot alone at DEBUG is covered by tests/e2e/test_video.py; this covers the runner and its worker child,
whose output goes to the same log.
"""

from __future__ import annotations

import sys

import pytest

from tests.e2e.harness import BOT_READY, BotHarness, shared_harness

from .helpers import queue_video, result_posts

pytestmark = pytest.mark.asyncio


class RunHarness(BotHarness):
    """The harness with `videobot run` in place of `videobot bot`."""

    async def start_bot(self, timeout: float = 120.0, **env: str) -> float:
        await self.bot.start(
            [sys.executable, "-m", "videobot.cli", "run"], self._env({**self.bot_env, **env}), self.tmp_path
        )
        self.bot_ready_seconds = await self.bot.wait_log(BOT_READY, timeout)
        await self.fd.wait_until_ready(timeout)
        return self.bot_ready_seconds


async def test_run_logs_no_token_at_debug(tmp_path) -> None:  # type: ignore[no-untyped-def]
    harness = RunHarness(tmp_path, worker=False)
    async with shared_harness(harness) as h:
        _, job_id = await queue_video(h, h.member_id, "a kettle boiling over")
        await h.wait_for(lambda: result_posts(h, job_id), 90, "the video post")
        await h.wait_job(job_id, "delivered", 15)
        assert await h.stop_bot() == 0
    log_text = h.bot.log()
    assert "worker process" in log_text and "ready: model" in log_text and f"job {job_id} done in" in log_text
    assert '"level": "DEBUG"' in log_text
    assert h.fd.token not in log_text
    assert h.fd.interactions
    for interaction in h.fd.interactions:
        assert interaction.token not in log_text
