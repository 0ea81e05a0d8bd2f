"""The worker's safety check end to end: the real bot and worker (tiny model, ``tiny-unsafe`` classifier)
against the fake Discord.

A picture given to ``/video image:`` or Animate that the classifier flags is refused by the worker before
rendering: the requester alone is told why (the public status only says it could not be made), the
credit comes back once, nothing is rendered, stored or posted. A text-only ``/video`` is scored after
rendering and its verdict stored with the result; in an age-restricted channel it is posted as usual,
elsewhere it is held: without a review channel it is rejected, with one it waits there (as a spoiler,
with Approve and Reject for moderators only) until a moderator decides, across a bot kill -9.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image
from sqlalchemy import select

from tests.faults.helpers import answer, ledger_kinds, queue_video, result_posts
from videobot.models import JobResult, ModAction
from videobot.safety import UNSAFE_INPUT

from .harness import BotHarness, shared_harness

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    harness = BotHarness(
        tmp_path_factory.mktemp("e2e-safety"),
        worker=True,
        bot_env={"VIDEOBOT_DEFAULT_QUOTA": "20"},
        worker_env={"VIDEOBOT_SAFETY_MODEL": "tiny-unsafe"},
    )
    async with shared_harness(harness) as started:  # asserts fd.problems() == [] (OpenAPI bodies included)
        yield started


def picture() -> bytes:
    im = Image.new("RGB", (96, 64))
    im.putdata([(x * 2, y * 3, 90) for y in range(64) for x in range(96)])
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


async def request_from_picture(h: BotHarness, how: str) -> int:
    """``/video image:`` or Apps → Animate with a picture; returns the queued job's id."""
    if how == "video":
        pic = h.fd.attachment("cat.png", picture())
        interaction = await h.slash(h.member_id, "video", prompt="the cat yawns", image=pic)
    else:
        mid = h.fd.post_user_message(h.other_id, h.channel_id, "my cat", files=[("cat.png", picture())])
        opened = await h.fd.message_command(h.guild_id, h.channel_id, h.member_id, "Animate", mid)
        assert (await opened.acknowledged(3))["type"] == 9
        interaction = await h.fd.submit_modal(opened, {})
    queued = await answer(h, interaction)
    job_id = max(j.id for j in await h.jobs(h.member_id))  # the member's newest job: this one
    assert f"#{job_id}" in queued and interaction.ephemeral
    return job_id


def public_with(h: BotHarness, channel_id: int, text: str) -> list[dict[str, Any]]:
    return [m for m in h.fd.messages(channel_id, include_ephemeral=False) if text in m["content"]]


def private_with(h: BotHarness, channel_id: int, text: str) -> list[dict[str, Any]]:
    return [
        m
        for m in h.fd.messages(channel_id, include_ephemeral=True)
        if m["ephemeral"] and text in m["content"]
    ]


def posts_of(h: BotHarness, channel_id: int, filename: str) -> list[dict[str, Any]]:
    """Every message in the channel (ephemeral ones too) that carries a file of that name."""
    return [
        m
        for m in h.fd.messages(channel_id, include_ephemeral=True)
        if any(a["filename"] == filename for a in m["attachments"])
    ]


@pytest.mark.parametrize("how", ["video", "animate"])
async def test_a_flagged_picture_is_refused_before_rendering_the_member_told_privately_and_refunded(
    h: BotHarness, how: str
) -> None:
    job_id = await request_from_picture(h, how)
    # The reason is the requester's alone: an ephemeral follow-up on their interaction.
    [notice] = await h.wait_for(
        lambda: private_with(h, h.channel_id, f"job #{job_id}: {UNSAFE_INPUT}") or None,
        90,
        "the refusal told privately",
    )
    assert "refunded" in notice["content"]
    job = await h.wait_job(job_id, "failed", 10)
    assert job.error_code == "unsafe_input" and job.progress_step == 0
    status = await h.wait_for(
        lambda: (m := h.fd.message(job.status_message_id)) and "could not be made" in m["content"] and m,
        20,
        "the neutral public status",
    )
    assert UNSAFE_INPUT not in status["content"]
    assert public_with(h, h.channel_id, UNSAFE_INPUT) == []
    kinds = sorted((e.kind, e.amount) for e in await h.ledger(h.member_id) if e.job_id == job_id)
    assert kinds == [("charge", -1), ("refund", 1)]
    # Nothing rendered, nothing stored, no video anywhere.
    assert f"job {job_id}: first frame" not in h.worker.log()
    assert f"job {job_id}: input picture safety score 1.0000 (tiny-unsafe" in h.worker.log()
    assert result_posts(h, job_id) == [] and result_posts(h, job_id, ephemeral=True) == []
    assert h.db is not None
    async with h.db.sessionmaker() as s:
        assert (await s.execute(select(JobResult).where(JobResult.job_id == job_id))).first() is None


async def test_in_an_age_restricted_channel_a_flagged_video_is_posted(h: BotHarness) -> None:
    adult = h.fd.add_channel(h.guild_id, "after-dark", nsfw=True)
    interaction = await h.fd.slash(
        h.guild_id, adult, h.other_id, "video", {"prompt": "a lighthouse in a storm"}
    )
    queued = await answer(h, interaction)
    job_id = int(re.search(r"Queued as job #(\d+)", queued)[1])  # type: ignore[index]
    await h.wait_for(lambda: posts_of(h, adult, f"videobot-{job_id}.mp4") or None, 90, "the video posted")
    job = await h.wait_job(job_id, "delivered", 10)
    assert job.channel_nsfw
    # A 🔁 rerun there is posted too (the channel's restriction comes with the reaction's channel).
    await h.fd.add_reaction(h.other_id, adult, job.result_message_id, "🔁")
    rerun = await h.wait_for(
        lambda: next((m for m in h.fd.messages(adult) if f"job #{job_id + 1}" in m["content"]), None),
        30,
        "the rerun's status",
    )
    assert rerun is not None
    await h.wait_for(lambda: posts_of(h, adult, f"videobot-{job_id + 1}.mp4") or None, 90, "the rerun posted")
    assert (await h.job(job_id + 1)).channel_nsfw
    assert h.db is not None
    async with h.db.sessionmaker() as s:
        rows = (await s.execute(select(JobResult).where(JobResult.job_id == job_id))).scalars().all()
    assert [(r.safety_score, r.safety_model) for r in rows] == [(1.0, "tiny-unsafe")]
    assert rows[0].safety_frame is not None and 0 <= rows[0].safety_frame < rows[0].num_frames


async def test_without_a_review_channel_a_flagged_video_is_rejected_and_the_member_told(
    h: BotHarness,
) -> None:
    _, job_id = await queue_video(h, h.member_id, "a storm over the sea")
    await h.wait_for(
        lambda: private_with(h, h.channel_id, "no review channel") or None, 90, "the rejection told privately"
    )
    job = await h.wait_job(job_id, "failed", 10)
    assert job.error_code == "rejected"
    for _ in range(100):  # told once: recorded right after the notice
        if (job := await h.job(job_id)).notified_at is not None:
            break
        await asyncio.sleep(0.2)
    assert job.notified_at is not None
    assert posts_of(h, h.channel_id, f"videobot-{job_id}.mp4") == []
    assert await ledger_kinds(h, job_id) == [("charge", -1), ("refund", 1)]
    status = h.fd.message(job.status_message_id)
    assert status is not None and "could not be made" in status["content"]
    assert h.db is not None
    async with h.db.sessionmaker() as s:
        assert (await s.execute(select(JobResult).where(JobResult.job_id == job_id))).first() is None
        actions = [
            (a.action, a.actor_id)
            for a in (await s.execute(select(ModAction).where(ModAction.target_id == job_id))).scalars()
        ]
    assert actions == [("safety.held", 0), ("safety.reject", 0)]


async def test_held_for_review_approved_once_across_a_bot_kill(h: BotHarness) -> None:
    review = h.fd.add_channel(h.guild_id, "mod-review")
    text = await answer(h, await h.slash(h.mod_id, "videoconfig", "review-channel", channel=review))
    assert f"<#{review}>" in text
    shown = await answer(h, await h.slash(h.mod_id, "videoconfig", "show"))
    assert f"Review channel: <#{review}>" in shown and "Safety check: `strict`" in shown
    _, job_id = await queue_video(h, h.member_id, "a quiet harbour at night")
    spoiler = f"SPOILER_videobot-{job_id}.mp4"
    [post] = await h.wait_for(lambda: posts_of(h, review, spoiler) or None, 90, "the review post")
    assert "safety score 1.00" in post["content"] and f"<@{h.member_id}>" in post["content"]
    assert "a quiet harbour at night" in post["content"]
    [notice] = await h.wait_for(
        lambda: (
            private_with(h, h.channel_id, f"job #{job_id}")
            and [m for m in private_with(h, h.channel_id, f"job #{job_id}") if "review" in m["content"]]
            or None
        ),
        30,
        "the requester told privately",
    )
    assert "refunded" in notice["content"]
    job = await h.wait_job(job_id, "held", 10)
    status = await h.wait_for(
        lambda: (m := h.fd.message(job.status_message_id)) and "held for review" in m["content"] and m,
        20,
        "the held status",
    )
    assert status["attachments"] == []
    assert posts_of(h, h.channel_id, f"videobot-{job_id}.mp4") == []
    assert await ledger_kinds(h, job_id) == [("charge", -1), ("refund", 1)]

    # kill -9 between the verdict and the decision (and a worker restart): nothing is posted again,
    # nothing is lost.
    await h.kill_bot()
    await h.stop_worker()
    await h.start_bot()
    await h.start_worker()
    await asyncio.sleep(3)
    assert len(posts_of(h, review, spoiler)) == 1
    assert (await h.job(job_id)).status == "held"

    approve = next(b for b in h.fd.buttons(post) if b["custom_id"] == f"videobot:review-approve:{job_id}")
    # Not a moderator: refused privately, nothing changes.
    refused = await h.fd.click(h.guild_id, review, h.other_id, post["id"], approve["custom_id"])
    await refused.acknowledged(5)
    text = await h.wait_for(lambda: (refused.original or {}).get("content"), 15, "refusal")
    assert "Only moderators" in text and refused.ephemeral
    assert (await h.job(job_id)).status == "held"

    clicked = await h.fd.click(h.guild_id, review, h.mod_id, post["id"], approve["custom_id"])
    await clicked.acknowledged(5)
    text = await h.wait_for(lambda: (clicked.original or {}).get("content"), 15, "approval answer")
    assert "Approved" in text and clicked.ephemeral
    [result] = await h.wait_for(
        lambda: posts_of(h, h.channel_id, f"videobot-{job_id}.mp4") or None, 30, "the approved video"
    )
    assert not result["ephemeral"]
    await h.wait_job(job_id, "delivered", 10)
    # A restart posts nothing again (the review post's buttons are gone: nothing left to click).
    await h.kill_bot()
    await h.start_bot()
    await asyncio.sleep(3)
    assert len(posts_of(h, h.channel_id, f"videobot-{job_id}.mp4")) == 1
    assert len(posts_of(h, review, spoiler)) == 1
    assert await ledger_kinds(h, job_id) == [("charge", -1), ("refund", 1)]
    decided = h.fd.message(post["id"])
    assert decided is not None and "Approved by" in decided["content"] and h.fd.buttons(decided) == []
    assert h.db is not None
    async with h.db.sessionmaker() as s:
        actions = [
            (a.action, a.actor_id, a.details.get("score"))
            for a in (await s.execute(select(ModAction).where(ModAction.target_id == job_id))).scalars()
        ]
    assert actions == [("safety.held", 0, 1.0), ("safety.approve", h.mod_id, 1.0)]


async def test_held_then_rejected_deletes_the_video_and_tells_the_member(h: BotHarness) -> None:
    review = h.fd.add_channel(h.guild_id, "mod-review-2")
    await answer(h, await h.slash(h.mod_id, "videoconfig", "review-channel", channel=review))
    _, job_id = await queue_video(h, h.member_id, "a fox in the snow")
    spoiler = f"SPOILER_videobot-{job_id}.mp4"
    [post] = await h.wait_for(lambda: posts_of(h, review, spoiler) or None, 90, "the review post")
    await h.wait_for(lambda: h.fd.buttons(h.fd.message(post["id"]) or {}) or None, 5, "buttons")
    await h.kill_bot()
    await h.start_bot()
    reject = next(b for b in h.fd.buttons(post) if b["custom_id"] == f"videobot:review-reject:{job_id}")
    clicked = await h.fd.click(h.guild_id, review, h.rolemod_id, post["id"], reject["custom_id"])
    await clicked.acknowledged(5)
    text = await h.wait_for(lambda: (clicked.original or {}).get("content"), 15, "rejection answer")
    # carol has only the moderator role, which this server has not set yet: refused.
    assert "Only moderators" in text
    clicked = await h.fd.click(h.guild_id, review, h.mod_id, post["id"], reject["custom_id"])
    await clicked.acknowledged(5)
    text = await h.wait_for(lambda: (clicked.original or {}).get("content"), 15, "rejection answer")
    assert "Rejected" in text
    await h.wait_for(
        lambda: private_with(h, h.channel_id, "did not approve") or None, 30, "the requester told privately"
    )
    job = await h.wait_job(job_id, "failed", 10)
    assert job.error_code == "rejected"
    assert posts_of(h, h.channel_id, f"videobot-{job_id}.mp4") == []
    decided = await h.wait_for(
        lambda: (m := h.fd.message(post["id"])) and "Rejected by" in m["content"] and m, 10, "review post"
    )
    assert decided["attachments"] == [] and h.fd.buttons(decided) == []
    assert await ledger_kinds(h, job_id) == [("charge", -1), ("refund", 1)]
    assert h.db is not None
    async with h.db.sessionmaker() as s:
        assert (await s.execute(select(JobResult).where(JobResult.job_id == job_id))).first() is None


async def test_with_a_safe_classifier_nothing_changes(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``tiny-safe`` scores every frame 0: a /video in an ordinary channel is posted as it always was."""
    harness = BotHarness(
        tmp_path_factory.mktemp("e2e-safe"),
        worker=True,
        worker_env={"VIDEOBOT_SAFETY_MODEL": "tiny-safe"},
    )
    async with shared_harness(harness) as safe:
        _, job_id = await queue_video(safe, safe.member_id, "a lighthouse in a storm")
        [post] = await safe.wait_for(lambda: result_posts(safe, job_id) or None, 90, "the video")
        assert not post["ephemeral"]
        job = await safe.wait_job(job_id, "delivered", 10)
        assert not job.channel_nsfw
        assert await ledger_kinds(safe, job_id) == [("charge", -1)]
        assert safe.db is not None
        async with safe.db.sessionmaker() as s:
            scores = (await s.execute(select(JobResult.safety_score).where(JobResult.job_id == job_id))).all()
            held = (await s.execute(select(ModAction).where(ModAction.target_id == job_id))).first()
        assert [tuple(r) for r in scores] == [(0.0,)] and held is None
