"""/video end to end with the real bot and a real worker (tiny model): what members see in the channel."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator

import av
import pytest
import pytest_asyncio

from videobot.jobs import SubmitRequest
from videobot.models import Job, MemberQuota
from videobot.presets import PRESETS, plan

from .harness import BotHarness, assert_schema_clean, register, unregister

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    async with BotHarness(tmp_path_factory.mktemp("e2e-video"), worker=True, extra_members=1) as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)


def result_posts(h: BotHarness) -> list[dict]:
    return [m for m in h.messages() if m["attachments"]]


def decode(data: bytes) -> tuple[str, int]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        frames = sum(1 for _ in container.decode(stream))
    return codec, frames


async def make_video(h: BotHarness, user_id: int, prompt: str) -> tuple[dict, int]:
    """Run /video, wait for the posted result; returns (result message, job id)."""
    before = {m["id"] for m in result_posts(h)}
    interaction = await h.slash(user_id, "video", prompt=prompt)
    await interaction.acknowledged(3)
    post = await h.wait_for(
        lambda: next((m for m in result_posts(h) if m["id"] not in before), None), 60, "the video post"
    )
    job = await delivered_job(h, user_id, int(post["id"]))
    return post, job.id


async def delivered_job(h: BotHarness, user_id: int, message_id: int, timeout: float = 10.0) -> Job:
    """The job marked delivered as ``message_id`` (marking follows the post by a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [j for j in await h.jobs(user_id) if j.result_message_id == message_id]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no job delivered as message {message_id}"
        await asyncio.sleep(0.05)


async def test_video_is_acknowledged_then_posted_as_playable_mp4(h: BotHarness) -> None:
    fd = h.fd
    prompt = f"a red fox in fresh snow @everyone <@{h.other_id}> **loud**"
    interaction = await h.slash(h.member_id, "video", prompt=prompt)
    body = await interaction.acknowledged(3)
    # Answered at once and privately: the "Queued as…" note is the first response (no "thinking…").
    assert body["type"] == 4 and body["data"]["flags"] & 64 and "Queued as job #" in body["data"]["content"]
    assert interaction.ack_latency is not None and interaction.ack_latency < 3

    post = await h.wait_for(lambda: next(iter(result_posts(h)), None), 60, "the video post")
    job = await delivered_job(h, h.member_id, int(post["id"]))
    assert job.status == "delivered"

    # The ephemeral answer names the job; the public status message shows who asked, without pinging.
    note = interaction.original
    assert note["ephemeral"] and f"job #{job.id}" in note["content"] and "Queued" in note["content"]
    # The status edit may lag the post (the 🔁 reaction goes first, 1 per 0.25 s per channel on Discord).
    status = await h.wait_for(
        lambda: (m := fd.message(job.status_message_id)) and "✅ done" in m["content"] and m,
        10,
        "final status",
    )
    assert not status["ephemeral"] and f"<@{h.member_id}>" in status["content"]
    assert status["allowed_mentions"] == {"parse": []} and status["mentions"] == []
    assert post["id"] in status["content"]

    # The result: an H.264 mp4 attachment named by the job id only, decodable.
    [attachment] = post["attachments"]
    assert attachment["filename"] == f"videobot-{job.id}.mp4"
    codec, frames = decode(fd.attachment_bytes(attachment))
    assert codec == "h264" and frames == job.params["num_frames"]

    # It mentions (pings) the requester and nobody else; the prompt's mentions are defused.
    content = post["content"]
    assert content.startswith(f"<@{h.member_id}>") and len(content) <= 2000
    assert [u["id"] for u in post["mentions"]] == [str(h.member_id)]
    assert post["allowed_mentions"]["parse"] == []
    assert [str(u) for u in post["allowed_mentions"]["users"]] == [str(h.member_id)]
    assert "@\u200beveryone" in content and "\\*\\*loud\\*\\*" in content
    assert f"seed {job.params['seed']}" in content and "`tiny`" in content

    # 🔁 is added for reruns; exactly one charge.
    reactions = await h.wait_for(lambda: fd.message(post["id"]).get("reactions"), 10, "🔁 reaction")
    assert reactions[0]["emoji"]["name"] == "🔁" and reactions[0]["me"] is True
    ledger = await h.ledger(h.member_id)
    assert [(e.kind, e.amount, e.job_id) for e in ledger] == [("charge", -1, job.id)]
    # Posted through the interaction while its token was valid.
    assert fd.requests_to("POST", "/webhooks/{application_id}/{token}")


async def test_rerun_reaction_is_charged_to_the_reactor_and_replies(h: BotHarness) -> None:
    post, parent_id = await make_video(h, h.member_id, "a lighthouse at dusk")
    other_before = await h.balance_used(h.other_id)
    member_before = await h.balance_used(h.member_id)

    await h.react(h.other_id, int(post["id"]), "🔁")
    rerun = await h.wait_for(
        lambda: next(
            (
                m
                for m in result_posts(h)
                if (m.get("message_reference") or {}).get("message_id") == post["id"]
            ),
            None,
        ),
        60,
        "the rerun post",
    )
    job = await delivered_job(h, h.other_id, int(rerun["id"]))
    assert (
        job.parent_job_id == parent_id
        and job.kind == "rerun"
        and job.status == "delivered"
        and job.result_message_id == int(rerun["id"])
    )
    parent = await h.job(parent_id)
    assert job.params["prompt"] == parent.params["prompt"] and job.params["seed"] != parent.params["seed"]
    # Charged to the reactor, not to the original requester; the reply mentions the reactor only.
    assert await h.balance_used(h.other_id) == other_before + 1
    assert await h.balance_used(h.member_id) == member_before
    assert [u["id"] for u in rerun["mentions"]] == [str(h.other_id)]
    assert rerun["attachments"][0]["filename"] == f"videobot-{job.id}.mp4"

    # Reaction spam inside the cooldown queues nothing more.
    await h.fd.remove_reaction(h.other_id, h.channel_id, int(post["id"]), "🔁")
    await h.react(h.other_id, int(post["id"]), "🔁")
    await h.fd.remove_reaction(h.other_id, h.channel_id, int(post["id"]), "🔁")
    await h.react(h.other_id, int(post["id"]), "🔁")
    await h.wait_for(lambda: "inside the cooldown" in h.bot.log(since_start=True), 10, "cooldown log line")
    assert len([j for j in await h.jobs(h.other_id) if j.parent_job_id == parent_id]) == 1


async def test_delete_reaction_only_for_the_requester(h: BotHarness) -> None:
    post, job_id = await make_video(h, h.member_id, "a paper boat on a puddle")
    mid = int(post["id"])
    # Someone else's ❌ does nothing.
    await h.react(h.other_id, mid, "❌")
    await h.wait_for(
        lambda: f"job {job_id}: ❌ by {h.other_id} ignored" in h.bot.log(since_start=True), 10, "ignored"
    )
    assert not h.fd.message(mid)["deleted"]
    # The requester's ❌ deletes the result.
    await h.react(h.member_id, mid, "❌")
    await h.wait_for(lambda: h.fd.message(mid)["deleted"], 10, "result deleted")
    # A moderator (Manage Server) may delete anyone's.
    post, _ = await make_video(h, h.other_id, "a kite over the dunes")
    await h.react(h.mod_id, int(post["id"]), "❌")
    await h.wait_for(lambda: h.fd.message(int(post["id"]))["deleted"], 10, "result deleted by a moderator")


async def test_refusals_are_ephemeral_and_charge_nothing(h: BotHarness) -> None:
    used = await h.balance_used(h.other_id)
    # Earlier tests' status messages are posted in the background (the channel's budget): count the
    # public messages once every job so far has its status message.
    deadline = time.monotonic() + 60
    while not all(j.status_message_id and h.fd.message(j.status_message_id) for j in await h.jobs()):
        assert time.monotonic() < deadline, "earlier jobs' status messages never appeared"
        await asyncio.sleep(0.1)
    public_before = len(h.messages())
    cases = [
        ({"prompt": "a cat", "seed": 2**32}, "seed must be a whole number from 0 to 4294967295"),
        ({"prompt": "a cat", "model": "sora-9000"}, "is not available here"),
        ({"prompt": "a cat", "duration": 60.0}, "choose a duration between"),
        ({"prompt": "   "}, "prompt is empty"),
    ]
    for options, expected in cases:
        interaction = await h.slash(h.other_id, "video", **options)
        assert (await interaction.acknowledged(3))["data"]["flags"] & 64
        await h.wait_for(lambda i=interaction: (i.original or {}).get("content"), 10, f"answer to {options}")
        assert expected in interaction.original["content"], interaction.original["content"]
        assert interaction.original["ephemeral"]
    assert await h.balance_used(h.other_id) == used
    assert len(h.messages()) == public_before


async def test_model_autocomplete_offers_the_configured_model(h: BotHarness) -> None:
    choices = await h.fd.autocomplete(
        h.guild_id, h.channel_id, h.member_id, "video", {"prompt": "x", "model": "ti"}, focused="model"
    )
    assert choices == [{"name": "tiny", "value": "tiny"}]


async def test_tokens_never_reach_the_log(h: BotHarness) -> None:
    log_text = h.bot.log()
    assert "videobot ready" in log_text
    assert h.fd.token not in log_text
    for interaction in h.fd.interactions:
        assert interaction.token not in log_text


async def test_failed_job_tells_the_requester_and_refunds(h: BotHarness) -> None:
    # A job the worker must refuse (a size the model cannot make), queued like the bot would.
    assert h.queue is not None
    params = plan(PRESETS["tiny"], "a square circle").to_dict() | {"width": 40}
    submitted = await h.queue.submit(
        SubmitRequest(
            idempotency_key="test:failed-job",
            guild_id=h.guild_id,
            channel_id=h.channel_id,
            user_id=h.other_id,
            model="tiny",
            params=params,
        )
    )
    job_id = submitted.job.id
    marker = f"job #{job_id}"
    notice = await h.wait_for(
        lambda: next(
            (m for m in h.messages() if marker in m["content"] and "could not be made" in m["content"]), None
        ),
        60,
        "the failure notice",
    )
    job = await h.wait_job(job_id, "failed", 10)
    assert "40 px is not valid" in notice["content"] and "refunded" in notice["content"]
    assert notice["content"].startswith(f"<@{h.other_id}>")
    assert [u["id"] for u in notice["mentions"]] == [str(h.other_id)]
    kinds = {(e.kind, e.amount) for e in await h.ledger(h.other_id) if e.job_id == job_id}
    assert kinds == {("charge", -1), ("refund", 1)}
    deadline = time.monotonic() + 10
    while (await h.job(job_id)).notified_at is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert job.error_code == "invalid_parameters"


async def test_rerun_without_credits_gets_feedback_that_deletes_itself(h: BotHarness) -> None:
    post, _ = await make_video(h, h.member_id, "a bonsai in the rain")
    broke = h.members[0]
    assert h.db is not None
    async with h.db.transaction() as s:  # a moderator's override: no credits for this member
        s.add(MemberQuota(guild_id=h.guild_id, user_id=broke, limit_override=0, updated_at=time.time()))
    await h.react(broke, int(post["id"]), "🔁")
    feedback = await h.wait_for(
        lambda: next((m for m in h.messages() if m["content"].startswith(f"<@{broke}>")), None),
        10,
        "feedback",
    )
    assert "video credit" in feedback["content"]
    assert [u["id"] for u in feedback["mentions"]] == [str(broke)]
    assert await h.jobs(broke) == []
    await h.wait_for(lambda: h.fd.message(int(feedback["id"]))["deleted"], 25, "the feedback deleting itself")
