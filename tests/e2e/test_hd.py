"""The HD button end to end: the real bot and worker (tiny LTX model with its tiny latent upsampler)
against the fake Discord: the reply's decoded video is twice the source's size, charged
``VIDEOBOT_HD_COST`` once, refunded when it fails, answered after a bot restart, and refused privately
where it cannot be made (tiny Wan has no upsampler)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.e2e.test_buttons import answer, click, frames_of, make_video, reply_to, result_posts
from tests.e2e.test_intake import intakes_left
from videobot.models import Job

from .harness import BotHarness, assert_schema_clean, register, unregister

pytestmark = pytest.mark.asyncio(loop_scope="module")

HD_COST = 2


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    async with BotHarness(
        tmp_path_factory.mktemp("e2e-hd"),
        worker=True,
        extra_members=3,
        common_env={"VIDEOBOT_DEFAULT_QUOTA": "100", "VIDEOBOT_HD_COST": str(HD_COST)},
    ) as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)
    assert harness.fd.problems() == []


def with_stale_hd_button(h: BotHarness, post: dict, job_id: int) -> dict:
    """``post`` as if it carried an HD button (a message the bot posted under another configuration):
    Discord only sends clicks on buttons a message has."""
    stored = h.fd._messages[int(post["id"])]
    stored.data["components"] = [
        *(stored.data.get("components") or []),
        {
            "type": 1,
            "components": [{"type": 2, "style": 2, "label": "HD", "custom_id": f"videobot:hd:{job_id}"}],
        },
    ]
    return h.fd.message(post["id"]) or {}


async def hd_child(h: BotHarness, user_id: int, source_id: int, timeout: float = 30.0) -> Job:
    deadline = time.monotonic() + timeout
    while not (
        found := [j for j in await h.jobs(user_id) if j.parent_job_id == source_id and j.kind == "hd"]
    ):
        assert time.monotonic() < deadline, "no HD job"
        await asyncio.sleep(0.1)
    return found[0]


async def test_hd_replies_with_the_same_video_at_twice_the_size_charged_once(h: BotHarness) -> None:
    post, source = await make_video(h, h.member_id, "a lighthouse at dusk")
    assert "HD" in [b["label"] for b in h.fd.buttons(post)]
    before_other, before_member = await h.balance_used(h.other_id), await h.balance_used(h.member_id)

    clicked = await click(h, h.other_id, post, "hd")
    text = await answer(h, clicked, "the HD answer")
    reply, job = await reply_to(h, post, timeout=90)
    assert f"Queued as job #{job.id} (HD of job #{source.id})" in text, text
    assert job.kind == "hd" and job.parent_job_id == source.id and job.user_id == h.other_id
    # The exact video asked again: same prompt and seed, twice the width and height.
    assert job.params["seed"] == source.params["seed"] and job.params["prompt"] == source.params["prompt"]
    assert (job.params["width"], job.params["height"]) == (
        2 * source.params["width"],
        2 * source.params["height"],
    )
    # What a member sees: a reply to the source whose video decodes at twice its size, same length.
    small = frames_of(h.fd.attachment_bytes(post["attachments"][0]))
    large = frames_of(h.fd.attachment_bytes(reply["attachments"][0]))
    assert large.shape == (small.shape[0], 2 * small.shape[1], 2 * small.shape[2], 3)
    assert reply["attachments"][0]["filename"] == f"videobot-{job.id}.mp4"
    assert reply["content"].startswith(f"<@{h.other_id}> here is your HD version")
    assert f"HD of job #{source.id}" in reply["content"]
    assert f"/channels/{h.guild_id}/{h.channel_id}/{post['id']}" in reply["content"]
    # An HD video offers no HD of itself; the others stay.
    assert [b["label"] for b in h.fd.buttons(reply)] == ["Rerun", "Remix", "Extend", "Delete"]
    # Charged VIDEOBOT_HD_COST to whoever clicked, once; nothing to the source's member.
    assert await h.balance_used(h.other_id) == before_other + HD_COST
    assert await h.balance_used(h.member_id) == before_member
    charges = [(e.kind, e.amount) for e in await h.ledger(h.other_id) if e.job_id == job.id]
    assert charges == [("charge", -HD_COST)]

    # An HD button on an HD video (as a message from another version could carry) is refused
    # privately, with nothing charged.
    stale = await click(h, h.other_id, with_stale_hd_button(h, reply, job.id), "hd")
    refused = await answer(h, stale, "the refusal")
    assert "already in HD" in refused, refused
    assert await h.balance_used(h.other_id) == before_other + HD_COST


async def test_hd_of_variations_is_their_first_video(h: BotHarness) -> None:
    member = h.members[0]
    note = await answer(
        h, await h.slash(member, "video", prompt="paper boats", seed=77, variations=2), "note"
    )
    job_id = int(re.search(r"job #(\d+)", note)[1])  # type: ignore[index]
    post = await h.wait_for(
        lambda: next(
            (m for m in result_posts(h) if m["attachments"][0]["filename"] == f"videobot-{job_id}-1.mp4"),
            None,
        ),
        90,
        "the variations post",
    )
    text = await answer(h, await click(h, member, post, "hd"), "the HD answer")
    assert "the first of the 2 videos, in HD" in text, text
    reply, job = await reply_to(h, post, timeout=90)
    assert job.params["seed"] == 77 and job.params["num_videos"] == 1
    first = frames_of(h.fd.attachment_bytes(post["attachments"][0]))
    large = frames_of(h.fd.attachment_bytes(reply["attachments"][0]))
    assert large.shape == (first.shape[0], 2 * first.shape[1], 2 * first.shape[2], 3)


async def test_queue_shows_an_hd_job_and_it_survives_a_bot_restart(h: BotHarness) -> None:
    member = h.members[1]
    post, source = await make_video(h, member, "a fox in the snow")
    await h.stop_worker()  # the HD job waits in the queue
    try:
        clicked = await click(h, member, post, "hd")
        h.fd.stall_original_edits(clicked)  # its "Queued as…" answer never arrives
        job = await hd_child(h, member, source.id)
        await asyncio.sleep(0.5)
        assert not (clicked.original or {}).get("content")  # "thinking…"
        await h.kill_bot()
        h.fd.stall_original_edits(clicked, stalled=False)
        await h.start_bot()
        assert f"Queued as job #{job.id}" in await answer(h, clicked, "the answer after the restart")
        assert await intakes_left(h) == 0
        shown = await answer(h, await h.slash(member, "queue"), "the /queue answer")
        assert f"job #{job.id} (HD of job #{source.id}): #1 in the queue" in shown, shown
    finally:
        await h.start_worker()
    reply, done = await reply_to(h, post, timeout=90)
    assert done.id == job.id
    # Charged once across the restart.
    assert [(e.kind, e.amount) for e in await h.ledger(member) if e.job_id == job.id] == [
        ("charge", -HD_COST)
    ]


async def test_an_hd_that_fails_is_refunded_once_and_the_member_told(h: BotHarness) -> None:
    member = h.members[2]
    post, source = await make_video(h, member, "a kite over a hill")
    await h.stop_worker()
    await h.start_worker(VIDEOBOT_HD_UPSAMPLER=str(h.tmp_path / "no-such-upsampler"))
    try:
        text = await answer(h, await click(h, member, post, "hd"), "the HD answer")
        assert "Queued as job #" in text, text
        job = await hd_child(h, member, source.id)
        await h.wait_job(job.id, "failed", 90)
        notice = await h.wait_for(
            lambda: next(
                (
                    m
                    for m in h.messages()
                    if f"job #{job.id}" in m["content"] and "could not be made" in m["content"]
                ),
                None,
            ),
            60,
            "the failure notice",
        )
        assert "HD upsampler" in notice["content"] and "refunded" in notice["content"], notice["content"]
        entries = sorted((e.kind, e.amount) for e in await h.ledger(member) if e.job_id == job.id)
        assert entries == [("charge", -HD_COST), ("refund", HD_COST)]
    finally:
        await h.stop_worker()
        await h.start_worker()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def wan(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    async with BotHarness(
        tmp_path_factory.mktemp("e2e-hd-wan"),
        worker=True,
        common_env={"VIDEOBOT_MODEL": "tiny-wan", "VIDEOBOT_DEFAULT_QUOTA": "100"},
    ) as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)
    assert harness.fd.problems() == []


async def test_a_model_without_an_upsampler_shows_no_hd_and_refuses_it_privately(wan: BotHarness) -> None:
    h = wan
    post, source = await make_video(h, h.member_id, "a lighthouse at dusk")
    assert "HD" not in [b["label"] for b in h.fd.buttons(post)]
    before = await h.balance_used(h.member_id)
    stale = await click(h, h.member_id, with_stale_hd_button(h, post, source.id), "hd")
    refused = await answer(h, stale, "the refusal")  # ephemeral (checked by ``answer``)
    assert "can't make HD videos" in refused and "tiny-wan" in refused, refused
    assert await h.balance_used(h.member_id) == before
    assert [j for j in await h.jobs() if j.parent_job_id == source.id] == []
