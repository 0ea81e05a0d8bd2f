"""Jobs that take a while (the worker sleeps at every step): cancel while running, rate-limited
progress edits, an expired interaction token, and bot restarts around delivery."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import update

from videobot.models import Job

from .harness import BotHarness, assert_schema_clean, register, unregister

pytestmark = pytest.mark.asyncio(loop_scope="module")

STEP_DELAY = 2.5  # seconds per denoising step; the tiny model has 2 steps


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    async with BotHarness(
        tmp_path_factory.mktemp("e2e-slow"),
        worker=True,
        worker_env={"VIDEOBOT_TEST_STEP_DELAY": str(STEP_DELAY)},
        bot_env={"VIDEOBOT_DEFAULT_QUOTA": "20"},
    ) as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)


def posts_of(h: BotHarness, job_id: int) -> list[dict]:
    name = f"videobot-{job_id}.mp4"
    return [m for m in h.messages() if any(a["filename"] == name for a in m["attachments"])]


async def submit(h: BotHarness, user_id: int, prompt: str):  # type: ignore[no-untyped-def]
    """/video; waits for the ephemeral "Queued as job #N" note. Returns (interaction, job id)."""
    interaction = await h.slash(user_id, "video", prompt=prompt)
    await interaction.acknowledged(3)
    note = await h.wait_for(
        lambda: re.search(r"Queued as job #(\d+)", (interaction.original or {}).get("content") or ""),
        15,
        "queued note",
    )
    return interaction, int(note[1])


async def test_cancel_a_running_job_stops_it_and_refunds(h: BotHarness) -> None:
    user = h.member_id
    _, job_id = await submit(h, user, "a very long train")
    job = await h.wait_job(job_id, "running", 30)
    interaction = await h.slash(user, "cancel", job=job_id)
    await interaction.acknowledged(3)
    text = await h.wait_for(lambda: (interaction.original or {}).get("content"), 15, "cancel answer")
    assert "being made right now" in text and "next step" in text
    job = await h.wait_job(job_id, "cancelled", 30)
    assert job.error_code == "cancelled"
    kinds = {(e.kind, e.amount) for e in await h.ledger(user) if e.job_id == job_id}
    assert kinds == {("charge", -1), ("refund", 1)}
    await h.wait_for(
        lambda: "refunded" in h.fd.message(job.status_message_id)["content"],
        15,
        "status message says cancelled",
    )
    assert posts_of(h, job_id) == []
    deadline = time.monotonic() + 10
    while (await h.job(job_id)).notified_at is None:  # recorded right after the edit
        assert time.monotonic() < deadline, "the cancellation was never marked as told"
        await asyncio.sleep(0.05)


async def test_rate_limited_progress_edits_still_show_progress_and_deliver(h: BotHarness) -> None:
    fd = h.fd
    fault = fd.inject("PATCH", r"^/channels/\d+/messages/\d+$", 429, count=3, retry_after=1.0)
    _, job_id = await submit(h, h.other_id, "a sunrise over a foggy valley")
    job = await h.with_status_message(job_id)  # posted after the answer
    await h.wait_for(lambda: posts_of(h, job_id), 60, "the video post")
    await h.wait_job(job_id, "delivered", 10)
    await h.wait_for(lambda: "✅ done" in fd.message(job.status_message_id)["content"], 20, "final status")
    assert fault.hits == 3
    edits = [
        r
        for r in fd.requests_to("PATCH", "/channels/{channel_id}/messages/{message_id}")
        if r.path.endswith(str(job.status_message_id))
    ]
    assert [r.status for r in edits].count(429) == 3
    shown = [r.json["content"] for r in edits if r.status == 200]
    # Progress went on after the 429s: a progress bar was shown, and it ended with the final text.
    assert any(re.search(r"step \d/2", c) for c in shown), shown
    assert "✅ done" in shown[-1]
    # At most one edit per 3 s per message (retries after a 429 are discord.py's, not new edits).
    sent = [r.at for r in edits if r.status == 200 and "✅ done" not in r.json["content"]]
    assert all(b - a >= 2.9 for a, b in zip(sent, sent[1:], strict=False)), sent


async def test_result_after_the_token_expired_is_posted_in_the_channel(h: BotHarness) -> None:
    fd = h.fd
    interaction, job_id = await submit(h, h.member_id, "a glacier calving")
    fd.expire_token(interaction)
    [post] = await h.wait_for(lambda: posts_of(h, job_id), 60, "the video post")
    await h.wait_job(job_id, "delivered", 10)
    assert "webhook_id" not in post  # a channel message, not an interaction follow-up
    assert post["content"].startswith(f"<@{h.member_id}>")
    assert [u["id"] for u in post["mentions"]] == [str(h.member_id)]
    refused = [r for r in fd.requests_to("POST", "/webhooks/{application_id}/{token}") if r.status == 401]
    assert refused, "the bot should have tried the follow-up first"
    channel_posts = [r for r in fd.requests_to("POST", "/channels/{channel_id}/messages") if r.files]
    assert (
        channel_posts[-1].json["nonce"] == f"job-{job_id}" and channel_posts[-1].json["enforce_nonce"] is True
    )


async def test_bot_restarted_before_posting_posts_exactly_once(h: BotHarness) -> None:
    syncs = len(h.fd.command_syncs)
    _, job_id = await submit(h, h.other_id, "a hot air balloon festival")
    await h.wait_job(job_id, "running", 30)
    assert await h.stop_bot() == 0  # graceful shutdown on SIGTERM
    await h.wait_job(job_id, "succeeded", 60)
    assert posts_of(h, job_id) == []
    await h.start_bot()
    [post] = await h.wait_for(lambda: posts_of(h, job_id), 30, "the video post after the restart")
    job = await h.wait_job(job_id, "delivered", 10)
    assert job.result_message_id == int(post["id"])
    await asyncio.sleep(1.0)  # a few more delivery-loop rounds: still one post
    assert len(posts_of(h, job_id)) == 1
    # Unchanged commands are not synced again on restart.
    assert len(h.fd.command_syncs) == syncs


async def test_crash_between_posting_and_marking_does_not_post_twice(h: BotHarness) -> None:
    _, job_id = await submit(h, h.member_id, "a lantern festival on a river")
    [post] = await h.wait_for(lambda: posts_of(h, job_id), 60, "the video post")
    await h.wait_job(job_id, "delivered", 10)
    await h.kill_bot()
    # What the database looks like when the bot died after posting and before mark_delivered.
    assert h.db is not None
    async with h.db.transaction() as s:
        await s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status="succeeded", result_message_id=None, delivered_at=None, notified_at=None)
        )
    started = time.monotonic()
    await h.start_bot()
    job = await h.wait_job(job_id, "delivered", 30)
    assert job.result_message_id == int(post["id"])
    assert len(posts_of(h, job_id)) == 1
    assert f"job {job_id}: already posted as message {post['id']}" in h.bot.log(since_start=True)
    assert time.monotonic() - started < 30
