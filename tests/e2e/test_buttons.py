"""The buttons on results (Rerun, Remix, Extend, Delete) end to end: the real bot and worker (tiny
model) against the fake Discord, clicks, forms, replies, charges, restarts."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import av
import numpy as np
import pytest
import pytest_asyncio
from sqlalchemy import update

from bot.ui.texts import RESTARTED_UNSURE
from tests.fakediscord import Interaction
from videobot.i18n import t
from videobot.models import Job, MemberQuota
from videobot.presets import PRESETS

from .harness import BotHarness, assert_schema_clean, register, unregister

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: A small maximum so the limit is reached in a test (the tiny preset's own is 4).
MAX_EXTENSIONS = 2
EXTEND_FRAMES = PRESETS["tiny"].extend_frames


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    async with BotHarness(
        tmp_path_factory.mktemp("e2e-buttons"),
        worker=True,
        extra_members=2,
        common_env={"VIDEOBOT_MAX_EXTENSIONS": str(MAX_EXTENSIONS), "VIDEOBOT_DEFAULT_QUOTA": "100"},
    ) as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)
    assert harness.fd.problems() == []


def result_posts(h: BotHarness) -> list[dict]:
    return [m for m in h.messages() if m["attachments"]]


def frames_of(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


async def delivered_job(h: BotHarness, message_id: int, timeout: float = 10.0) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        found = [j for j in await h.jobs() if j.result_message_id == message_id]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no job delivered as message {message_id}"
        await asyncio.sleep(0.05)


async def make_video(h: BotHarness, user_id: int, prompt: str) -> tuple[dict, Job]:
    interaction = await h.slash(user_id, "video", prompt=prompt)
    note = await answer(h, interaction, "the queued note")
    job_id = int(re.search(r"job #(\d+)", note)[1])  # type: ignore[index]
    post = await h.wait_for(
        lambda: next(
            (m for m in result_posts(h) if m["attachments"][0]["filename"] == f"videobot-{job_id}.mp4"), None
        ),
        60,
        "the video post",
    )
    return post, await delivered_job(h, int(post["id"]))


async def reply_to(h: BotHarness, post: dict, timeout: float = 60.0) -> tuple[dict, Job]:
    """The result posted as a reply to ``post`` (a rerun, remix or extension of it)."""
    reply = await h.wait_for(
        lambda: next(
            (
                m
                for m in result_posts(h)
                if (m.get("message_reference") or {}).get("message_id") == post["id"]
            ),
            None,
        ),
        timeout,
        f"a reply to message {post['id']}",
    )
    return reply, await delivered_job(h, int(reply["id"]))


async def click(h: BotHarness, user_id: int, post: dict, action: str) -> Interaction:
    [button] = [
        b for b in h.fd.buttons(h.fd.message(post["id"])) if b["custom_id"].startswith(f"videobot:{action}:")
    ]
    return await h.fd.click(h.guild_id, h.channel_id, user_id, int(post["id"]), button["custom_id"])


async def answer(h: BotHarness, interaction: Interaction, what: str) -> str:
    """The ephemeral text a click or form submission was answered with."""
    body = await interaction.acknowledged(3)
    if body["type"] == 4:
        assert body["data"]["flags"] & 64, body
        return str(body["data"]["content"])
    assert body["type"] == 5 and body["data"]["flags"] & 64, body
    await h.wait_for(lambda: (interaction.original or {}).get("content"), 20, what)
    assert interaction.original is not None and interaction.original["ephemeral"]
    return str(interaction.original["content"])


async def open_form(h: BotHarness, user_id: int, post: dict, action: str) -> Interaction:
    opened = await click(h, user_id, post, action)
    body = await opened.acknowledged(3)
    assert body["type"] == 9, body  # the form is the first answer
    assert opened.modal is not None
    return opened


def form_inputs(modal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    inputs: dict[str, dict[str, Any]] = {}
    for top in modal["components"]:
        for child in [top.get("component") or {}, *(top.get("components") or [])]:
            if child.get("type") == 4:
                inputs[child["custom_id"]] = child
    return inputs


def assert_starts_with(longer: np.ndarray, source: np.ndarray) -> None:
    """``longer`` begins with ``source``'s frames (within what a second H.264 encode changes), and
    not merely with any frames of the same size: each frame is nearer its source frame than to the
    new frames after the joint."""
    head = longer[: len(source)].astype(np.float32)
    ref = source.astype(np.float32)
    diffs = np.abs(head - ref).mean(axis=(1, 2, 3))
    assert diffs.max() < 6, diffs  # measured: at most 2.6 levels after the second encode
    unrelated = np.abs(longer[len(source) :].astype(np.float32) - ref[-1]).mean()
    assert diffs.max() < unrelated / 2, (diffs, unrelated)


async def test_every_result_carries_the_buttons_and_rerun_charges_the_clicker(h: BotHarness) -> None:
    post, source = await make_video(h, h.member_id, "a lighthouse at dusk")
    buttons = h.fd.buttons(post)
    assert [b["label"] for b in buttons] == ["Rerun", "Remix", "Extend", "HD", "Delete"]
    assert [b["custom_id"] for b in buttons] == [
        f"videobot:{a}:{source.id}" for a in ("rerun", "remix", "extend", "hd", "delete")
    ]
    # The 🔁 reaction is still added.
    await h.wait_for(lambda: h.fd.message(post["id"]).get("reactions"), 10, "🔁 reaction")
    member_before, other_before = await h.balance_used(h.member_id), await h.balance_used(h.other_id)

    clicked = await click(h, h.other_id, post, "rerun")
    text = await answer(h, clicked, "the rerun answer")
    reply, job = await reply_to(h, post)
    assert f"Queued as job #{job.id}" in text and f"Rerun of job #{source.id}" in text
    assert job.kind == "rerun" and job.parent_job_id == source.id and job.user_id == h.other_id
    assert job.params["prompt"] == source.params["prompt"] and job.params["seed"] != source.params["seed"]
    # Charged to whoever clicked, once.
    assert await h.balance_used(h.other_id) == other_before + 1
    assert await h.balance_used(h.member_id) == member_before
    # The reply says what it is, links the message it came from, pings only the clicker, has buttons.
    assert reply["content"].startswith(f"<@{h.other_id}> here is your rerun")
    assert f"Rerun of job #{source.id}" in reply["content"]
    assert f"/channels/{h.guild_id}/{h.channel_id}/{post['id']}" in reply["content"]
    assert [u["id"] for u in reply["mentions"]] == [str(h.other_id)]
    assert [b["custom_id"] for b in h.fd.buttons(reply)][0] == f"videobot:rerun:{job.id}"
    # Its status message replies to the source too and says what it is.
    job = await h.with_status_message(job.id)
    status = h.fd.message(job.status_message_id)
    assert status["message_reference"]["message_id"] == post["id"]
    assert f"asked for a rerun of job #{source.id}" in status["content"]


async def test_remix_opens_a_prefilled_form_and_posts_the_edited_video_as_a_reply(h: BotHarness) -> None:
    post, source = await make_video(h, h.member_id, "a paper boat on a puddle")
    other_before, member_before = await h.balance_used(h.other_id), await h.balance_used(h.member_id)
    opened = await open_form(h, h.other_id, post, "remix")
    inputs = form_inputs(opened.modal or {})
    assert inputs["prompt"]["value"] == source.params["prompt"]
    assert "negative_prompt" in inputs and inputs["negative_prompt"].get("value") in (None, "")

    submitted = await h.fd.submit_modal(
        opened, {"prompt": "a paper boat on a stormy sea", "negative_prompt": "blur"}
    )
    text = await answer(h, submitted, "the remix answer")
    reply, job = await reply_to(h, post)
    assert f"Queued as job #{job.id}" in text
    assert job.kind == "remix" and job.parent_job_id == source.id and job.user_id == h.other_id
    assert job.params["prompt"] == "a paper boat on a stormy sea" and job.params["negative_prompt"] == "blur"
    for key in ("num_frames", "width", "height", "fps", "num_inference_steps", "verb"):
        assert job.params[key] == source.params[key], key
    assert await h.balance_used(h.other_id) == other_before + 1
    assert await h.balance_used(h.member_id) == member_before
    assert reply["content"].startswith(f"<@{h.other_id}> here is your remix")
    assert f"Remix of job #{source.id}" in reply["content"] and "stormy sea" in reply["content"]
    assert f"/channels/{h.guild_id}/{h.channel_id}/{post['id']}" in reply["content"]


async def test_extend_continues_the_clip_twice_then_says_the_limit_is_reached(h: BotHarness) -> None:
    post, source = await make_video(h, h.member_id, "a fox running through snow")
    frames0 = frames_of(h.fd.attachment_bytes(post["attachments"][0]))
    used = await h.balance_used(h.member_id)

    opened = await open_form(h, h.member_id, post, "extend")
    assert form_inputs(opened.modal or {})["prompt"]["value"] == source.params["prompt"]
    text = await answer(h, await h.fd.submit_modal(opened, {"prompt": "the fox leaps over a log"}), "answer")
    reply1, ext1 = await reply_to(h, post)
    assert f"Queued as job #{ext1.id}" in text
    frames1 = frames_of(h.fd.attachment_bytes(reply1["attachments"][0]))
    # Longer by the extension length, and it starts with the source clip.
    assert abs(len(frames1) - (len(frames0) + EXTEND_FRAMES)) <= 1, (len(frames0), len(frames1))
    assert frames1.shape[1:] == frames0.shape[1:]
    assert_starts_with(frames1, frames0)
    assert ext1.kind == "extend" and ext1.parent_job_id == source.id and ext1.params["verb"] == "extend"
    assert ext1.params["prompt"] == "the fox leaps over a log"
    assert f"Extension 1 of job #{source.id}" in reply1["content"]

    # A second extension, continuing the first (the prefilled prompt kept).
    opened = await open_form(h, h.member_id, reply1, "extend")
    await answer(h, await h.fd.submit_modal(opened), "the second extension's answer")
    reply2, ext2 = await reply_to(h, reply1)
    frames2 = frames_of(h.fd.attachment_bytes(reply2["attachments"][0]))
    assert abs(len(frames2) - (len(frames1) + EXTEND_FRAMES)) <= 1
    assert_starts_with(frames2, frames1)
    assert ext2.parent_job_id == ext1.id and ext2.params["prompt"] == "the fox leaps over a log"
    assert f"Extension 2 of job #{source.id}" in reply2["content"]
    assert await h.balance_used(h.member_id) == used + 2

    # The maximum reached: refused at the click, with the reason, before any form; nothing charged.
    refused = await click(h, h.member_id, reply2, "extend")
    reason = await answer(h, refused, "the refusal")
    assert "extended 2 times already" in reason and f"({MAX_EXTENSIONS})" in reason
    assert refused.modal is None
    assert await h.balance_used(h.member_id) == used + 2


async def test_all_buttons_work_after_the_bot_is_killed_and_restarted(h: BotHarness) -> None:
    post, source = await make_video(h, h.member_id, "a kite over the dunes")
    # A form opened before the restart is submitted after it.
    opened = await open_form(h, h.other_id, post, "extend")
    await h.kill_bot()
    await h.start_bot()

    text = await answer(h, await h.fd.submit_modal(opened, {"prompt": "the kite climbs"}), "extend answer")
    reply, ext = await reply_to(h, post)
    assert f"Queued as job #{ext.id}" in text and ext.kind == "extend" and ext.user_id == h.other_id

    await h.kill_bot()
    await h.start_bot()
    clicked = await click(h, h.rolemod_id, post, "rerun")
    await answer(h, clicked, "rerun answer after a restart")
    await h.wait_for(
        lambda: (
            len(
                [
                    m
                    for m in result_posts(h)
                    if (m.get("message_reference") or {}).get("message_id") == post["id"]
                ]
            )
            >= 2
        ),
        60,
        "the rerun after a restart",
    )
    rerun = [j for j in await h.jobs(h.rolemod_id) if j.parent_job_id == source.id]
    assert [j.kind for j in rerun] == ["rerun"]

    opened = await open_form(h, h.rolemod_id, post, "remix")
    await answer(h, await h.fd.submit_modal(opened, {"prompt": "a kite over the sea"}), "remix answer")
    await h.wait_for(
        lambda: (
            len(
                [
                    m
                    for m in result_posts(h)
                    if (m.get("message_reference") or {}).get("message_id") == post["id"]
                ]
            )
            >= 3
        ),
        60,
        "the remix after a restart",
    )
    deleted = await click(h, h.member_id, post, "delete")
    assert "Deleted" in await answer(h, deleted, "delete answer")
    assert h.fd.message(post["id"])["deleted"]


async def test_only_the_requester_or_a_moderator_can_delete(h: BotHarness) -> None:
    post, source = await make_video(h, h.member_id, "a bonsai in the rain")
    refused = await click(h, h.other_id, post, "delete")
    assert "Only the person who asked for this video or a moderator" in await answer(h, refused, "refusal")
    assert not h.fd.message(post["id"])["deleted"]
    done = await click(h, h.member_id, post, "delete")
    assert f"job #{source.id}" in await answer(h, done, "deleted")
    assert h.fd.message(post["id"])["deleted"]
    # A moderator (Manage Server) may delete anyone's; ❌ keeps working beside the button.
    post, _ = await make_video(h, h.other_id, "a comet over mountains")
    await answer(h, await click(h, h.mod_id, post, "delete"), "deleted by a moderator")
    assert h.fd.message(post["id"])["deleted"]
    post, _ = await make_video(h, h.other_id, "a snail on a leaf")
    await h.react(h.other_id, int(post["id"]), "❌")
    await h.wait_for(lambda: h.fd.message(int(post["id"]))["deleted"], 10, "deleted with ❌")


async def test_clicks_without_credits_or_on_expired_results_are_refused_ephemerally(h: BotHarness) -> None:
    post, source = await make_video(h, h.member_id, "a tram in the fog")
    broke = h.members[0]
    assert h.db is not None
    async with h.db.transaction() as s:
        s.add(MemberQuota(guild_id=h.guild_id, user_id=broke, limit_override=0, updated_at=time.time()))
    public_before = len(h.messages())
    for action in ("rerun", "remix", "extend"):
        clicked = await click(h, broke, post, action)
        assert "video credit" in await answer(h, clicked, f"{action} refusal"), action
        assert clicked.modal is None
    assert await h.jobs(broke) == []
    assert len(h.messages()) == public_before

    # The stored video purged (retention): Extend explains; a text video can still be rerun.
    assert h.queue is not None
    async with h.db.transaction() as s:
        await s.execute(update(Job).where(Job.id == source.id).values(delivered_at=time.time() - 10 * 86400))
    await h.queue.purge_results(3600)
    clicked = await click(h, h.other_id, post, "extend")
    assert "has expired" in await answer(h, clicked, "expired") and clicked.modal is None
    clicked = await click(h, h.other_id, post, "rerun")
    assert "Queued as job #" in await answer(h, clicked, "rerun of a purged text video")


async def test_a_form_submitted_after_its_result_was_deleted_is_refused(h: BotHarness) -> None:
    post, source = await make_video(h, h.member_id, "a lantern on a river")
    opened = await open_form(h, h.other_id, post, "remix")
    await answer(h, await click(h, h.member_id, post, "delete"), "deleted")
    assert h.fd.message(post["id"])["deleted"]
    late = await h.fd.submit_modal(opened, {"prompt": "a lantern on a lake"})
    assert "no longer available" in await answer(h, late, "refusal")
    assert [j for j in await h.jobs(h.other_id) if j.parent_job_id == source.id] == []
    # The deleted video's stored file went with it.
    assert h.queue is not None and await h.queue.stored_files(source.id) == frozenset()


async def test_queue_shows_where_a_job_came_from(h: BotHarness) -> None:
    post, source = await make_video(h, h.member_id, "a windmill in a storm")
    await h.stop_worker()  # the rerun waits in the queue
    try:
        clicked = await click(h, h.member_id, post, "rerun")
        await answer(h, clicked, "the rerun answer")
        shown = await h.slash(h.member_id, "queue")
        text = await answer(h, shown, "the /queue answer")
        [rerun] = [j for j in await h.jobs(h.member_id) if j.parent_job_id == source.id]
        assert f"job #{rerun.id} (Rerun of job #{source.id}): #1 in the queue" in text, text
    finally:
        await h.start_worker()
    await reply_to(h, post)


async def test_a_click_and_a_rerun_reaction_right_after_the_post_work(h: BotHarness) -> None:
    """The result is visible (buttons, 🔁) before the bot has recorded it as delivered: clicks and
    reactions in that window work. The window is held open by holding Discord's answer to the post."""
    held = h.fd.hold("POST", r"^/webhooks/\d+/[^/]+$")  # the result, as the /video's follow-up
    try:
        note = await answer(h, await h.slash(h.member_id, "video", prompt="a heron at dawn"), "queued note")
        job_id = int(re.search(r"job #(\d+)", note)[1])  # type: ignore[index]
        await held.reached(90)
        [post] = [m for m in result_posts(h) if m["attachments"][0]["filename"] == f"videobot-{job_id}.mp4"]
        assert (await h.job(job_id)).status == "succeeded"

        clicked = await click(h, h.other_id, post, "rerun")
        text = await answer(h, clicked, "the rerun answer")
        assert "Queued as job #" in text, text
        opened = await open_form(h, h.other_id, post, "extend")
        assert form_inputs(opened.modal or {})["prompt"]["value"] == "a heron at dawn"
        await h.react(h.member_id, int(post["id"]), "🔁")

        async def reaction_rerun() -> list[Job]:
            return [j for j in await h.jobs(h.member_id) if j.parent_job_id == job_id and j.kind == "rerun"]

        deadline = time.monotonic() + 30
        while not await reaction_rerun():
            assert time.monotonic() < deadline, f"no rerun from 🔁\n{h.bot.tail(30)}"
            await asyncio.sleep(0.1)
        # All of it while the post was still unrecorded.
        assert (await h.job(job_id)).status == "succeeded"
    finally:
        held.release()
    await h.wait_job(job_id, "delivered", 30)
    [from_click] = [j for j in await h.jobs(h.other_id) if j.parent_job_id == job_id]
    assert from_click.kind == "rerun" and from_click.reply_to_message_id == int(post["id"])
    [from_reaction] = await reaction_rerun()
    assert from_reaction.reply_to_message_id == int(post["id"])
    # Both are answered under the post once made.
    await h.wait_for(
        lambda: (
            len(
                [
                    m
                    for m in result_posts(h)
                    if (m.get("message_reference") or {}).get("message_id") == post["id"]
                ]
            )
            >= 2
        ),
        90,
        "the two reruns under the post",
    )


async def test_delete_acts_only_on_its_own_result_and_says_when_discord_refuses(h: BotHarness) -> None:
    assert h.queue is not None
    post_a, job_a = await make_video(h, h.member_id, "a red balloon")
    post_b, job_b = await make_video(h, h.member_id, "a blue balloon")
    buttons = {"components": post_a["components"]}  # job A's buttons, Delete included
    # A message of the bot's with job A's buttons but not job A's video (an edit gone wrong, say):
    # Delete authorises on job A, so it must not delete this message.
    stray = h.fd.post_bot_message(h.channel_id, {"content": "something else", **buttons})
    refused = await click(h, h.member_id, h.fd.message(stray), "delete")
    assert "does not belong to this message" in await answer(h, refused, "the refusal")
    assert not h.fd.message(stray)["deleted"] and not h.fd.message(post_a["id"])["deleted"]
    assert "result" in await h.queue.stored_files(job_a.id)
    # A copy of job A's result (posted twice): deleted, and job A's recorded post and file stay.
    copy = h.fd.post_bot_message(
        h.channel_id,
        {"content": post_a["content"], **buttons},
        [(f"videobot-{job_a.id}.mp4", h.fd.attachment_bytes(post_a["attachments"][0]))],
    )
    assert f"job #{job_a.id}" in await answer(
        h, await click(h, h.member_id, h.fd.message(copy), "delete"), "ok"
    )
    assert h.fd.message(copy)["deleted"] and not h.fd.message(post_a["id"])["deleted"]
    assert "result" in await h.queue.stored_files(job_a.id)

    # Discord refuses the delete (403): the member is told why; the message and its file stay.
    path = rf"^/channels/{h.channel_id}/messages/{post_b['id']}$"
    h.fd.inject("DELETE", path, 403, code=50013, message="Missing Permissions")
    refused = await click(h, h.member_id, post_b, "delete")
    text = await answer(h, refused, "the 403 answer")
    assert "missing a permission" in text and "moderator" in text, text
    assert not h.fd.message(post_b["id"])["deleted"]
    assert "result" in await h.queue.stored_files(job_b.id)
    assert (await h.job(job_b.id)).result_message_id == int(post_b["id"])

    # Refused, and the message turns out to be gone after all: its stored file goes too.
    h.fd.inject("DELETE", path, 403, code=50013, message="Missing Permissions")
    h.fd.inject("GET", path, 404, code=10008, message="Unknown Message")
    refused = await click(h, h.member_id, post_b, "delete")
    assert "missing a permission" in await answer(h, refused, "the second 403 answer")
    assert await h.queue.stored_files(job_b.id) == frozenset()

    # The real button still works.
    done = await click(h, h.member_id, post_a, "delete")
    assert f"job #{job_a.id}" in await answer(h, done, "deleted")
    assert h.fd.message(post_a["id"])["deleted"]


async def test_the_delete_reaction_follows_the_delete_buttons_rules(h: BotHarness) -> None:
    """❌ and the Delete button are one path: a refused delete (403) keeps the message and its file, and
    a refused delete of a message that turns out to be gone removes the stored file (as the button)."""
    assert h.queue is not None
    post, job = await make_video(h, h.member_id, "a green balloon")
    path = rf"^/channels/{h.channel_id}/messages/{post['id']}$"
    refused = h.fd.inject("DELETE", path, 403, code=50013, message="Missing Permissions")
    await h.react(h.member_id, int(post["id"]), "❌")
    await h.wait_for(lambda: refused.hits, 10, "the delete tried")
    await asyncio.sleep(0.5)  # what the bot does after the 403
    assert not h.fd.message(post["id"])["deleted"]
    assert "result" in await h.queue.stored_files(job.id)
    # Refused, and the message is gone after all (a moderator's ❌ this time): its stored file goes.
    refused = h.fd.inject("DELETE", path, 403, code=50013, message="Missing Permissions")
    h.fd.inject("GET", path, 404, code=10008, message="Unknown Message")
    await h.react(h.mod_id, int(post["id"]), "❌")
    await h.wait_for(lambda: refused.hits, 10, "the second delete tried")
    deadline = time.monotonic() + 10
    while await h.queue.stored_files(job.id):
        assert time.monotonic() < deadline, "the stored file of a message that is gone was kept"
        await asyncio.sleep(0.1)


async def test_remix_and_extend_forms_check_the_channel_where_they_are_submitted(h: BotHarness) -> None:
    post, source = await make_video(h, h.member_id, "a sailboat at noon")
    remix = await open_form(h, h.other_id, post, "remix")
    extend = await open_form(h, h.other_id, post, "extend")
    elsewhere = h.fd.add_channel(h.guild_id, "elsewhere")
    await h.set_guild_config(allowed_channel_ids=[elsewhere])
    try:
        for opened in (remix, extend):
            late = await h.fd.submit_modal(opened, {"prompt": "a sailboat at night"})
            text = await answer(h, late, "the refusal")
            assert "can't be made in this channel" in text and f"<#{elsewhere}>" in text, text
    finally:
        await h.set_guild_config(allowed_channel_ids=[])
    assert [j for j in await h.jobs(h.other_id) if j.parent_job_id == source.id] == []


async def test_a_click_or_form_acknowledged_when_the_bot_died_is_answered_by_the_next_bot(
    h: BotHarness,
) -> None:
    """Rerun, an Extend form's submission and Delete, each done, then the bot dies while its answer is
    on its way: the next bot answers each (the job it made; Delete: that it may not have happened)."""
    post, source = await make_video(h, h.member_id, "a moth at a lamp")
    opened = await open_form(h, h.other_id, post, "extend")

    async def child(kind: str) -> Job:
        deadline = time.monotonic() + 30
        while not (
            found := [j for j in await h.jobs(h.other_id) if j.parent_job_id == source.id and j.kind == kind]
        ):
            assert time.monotonic() < deadline, f"no {kind} job"
            await asyncio.sleep(0.1)
        return found[0]

    rerun_click = await click(h, h.other_id, post, "rerun")
    h.fd.stall_original_edits(rerun_click)  # the answer never arrives
    rerun = await child("rerun")
    extend_form = await h.fd.submit_modal(opened, {"prompt": "the moth flies off"})
    h.fd.stall_original_edits(extend_form)
    extension = await child("extend")
    delete_click = await click(h, h.member_id, post, "delete")
    h.fd.stall_original_edits(delete_click)
    await h.wait_for(lambda: h.fd.message(post["id"])["deleted"], 20, "the post deleted")
    await asyncio.sleep(0.5)  # the answers are on their way (and stall)
    asked = (rerun_click, extend_form, delete_click)
    for interaction in asked:
        assert (await interaction.acknowledged(3))["type"] == 5
        assert not (interaction.original or {}).get("content")  # "thinking…"

    await h.kill_bot()
    for interaction in asked:
        h.fd.stall_original_edits(interaction, stalled=False)
    await h.start_bot()

    assert f"Queued as job #{rerun.id}" in await answer(h, rerun_click, "the rerun's answer")
    assert f"Queued as job #{extension.id}" in await answer(h, extend_form, "the extension's answer")
    assert await answer(h, delete_click, "the delete's answer") == t("en", RESTARTED_UNSURE)
