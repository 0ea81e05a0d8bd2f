"""Hostile and out-of-range input through /video and reactions: refused politely or defused, never lost or charged twice.

Covered elsewhere and not repeated: a whitespace-only prompt, a seed above 2^32-1, an unknown model, a
too-long duration (tests/e2e/test_video.py); blocklisted words in other case and Unicode look-alikes
(tests/moderation). Pictures (``/video image:``, Apps → Animate) have their bad-input cases in
tests/e2e/test_image.py: a decompression bomb, bytes that are not a picture, a file over the cap (and
one that lies about its size), a message without a picture, a model that cannot start from a picture.
The test below fails if another command starts taking files, as a reminder to add its cases.

What Discord itself refuses never reaches the bot, so it is checked where Discord takes it from: the
registered command (prompt length 1-1,000, aspect ratios as fixed choices).
"""

from __future__ import annotations

import asyncio
import re
import time
import unicodedata
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.cogs.generate._reactions import RERUN_COOLDOWN_SECONDS
from tests.e2e.harness import BotHarness, shared_harness

from .helpers import answer, ledger_kinds, queue_video, result_posts

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    harness = BotHarness(
        tmp_path_factory.mktemp("faults-input"),
        worker=True,
        bot_env={"VIDEOBOT_DEFAULT_QUOTA": "20"},
        extra_members=2,
    )
    async with shared_harness(harness) as started:
        yield started


def video_options(h: BotHarness) -> dict[str, dict]:
    [video] = [c for c in h.fd.commands(h.guild_id) if c["name"] == "video"]
    return {o["name"]: o for o in video["options"]}


def pings(message: dict, member: int) -> list[str]:
    """Who Discord would notify for this message: @everyone/@here, roles, users other than ``member``."""
    allowed = message["allowed_mentions"] or {"parse": ["everyone", "roles", "users"]}
    parse = allowed.get("parse") or []
    content = message["content"]
    out = []
    if re.search(r"@(everyone|here)", content) and "everyone" in parse:
        out.append("everyone")
    for role in re.findall(r"<@&(\d+)>", content):
        if "roles" in parse or role in map(str, allowed.get("roles") or []):
            out.append(f"role {role}")
    for user in re.findall(r"<@!?(\d+)>", content):
        if user != str(member) and ("users" in parse or user in map(str, allowed.get("users") or [])):
            out.append(f"user {user}")
    return out


async def test_only_video_takes_a_file_and_it_is_optional(h: BotHarness) -> None:
    takes_files = []
    for command in h.fd.commands(h.guild_id):
        stack = list(command.get("options") or [])
        while stack:
            option = stack.pop()
            if option["type"] == 11:
                takes_files.append((command["name"], option["name"], option.get("required", False)))
            stack.extend(option.get("options") or [])
    # Another command taking an attachment needs its bad-input tests (see tests/e2e/test_image.py; the end
    # picture's: tests/e2e/test_keyframes.py).
    assert sorted(takes_files) == [("video", "end_image", False), ("video", "image", False)]


async def test_discord_bounds_the_prompt_and_offers_only_valid_aspect_ratios(h: BotHarness) -> None:
    options = video_options(h)
    assert options["prompt"]["required"] and options["prompt"]["type"] == 3
    assert (options["prompt"]["min_length"], options["prompt"]["max_length"]) == (1, 1000)
    assert [c["value"] for c in options["aspect_ratio"]["choices"]] == ["16:9", "9:16", "1:1"]


async def test_hostile_prompt_is_defused_and_never_names_a_file(h: BotHarness) -> None:
    member = h.member_id
    role = h.moderator_role_id
    core = (
        f"\x00a fox\x07 in\x1b[31m snow\x7f @everyone @here <@&{role}> <@{h.other_id}> "
        "../../etc/passwd ..\\..\\boot.ini /tmp/x.mp4 **bold** `code` ||spoiler|| # heading\n> quote "
    )
    prompt = (core + "*_~`|>@" * 200)[:1000]  # Discord's limit; markdown escaping doubles its length
    _, job_id = await queue_video(h, member, prompt)
    await h.wait_for(lambda: result_posts(h, job_id), 60, "the video post")
    job = await h.wait_job(job_id, "delivered", 15)
    [post] = result_posts(h, job_id)

    stored = job.params["prompt"]
    assert not any(unicodedata.category(ch) == "Cc" and ch != "\n" for ch in stored)
    assert stored.startswith("a fox in[31m snow @everyone")
    status = h.fd.message(job.status_message_id)
    for message in (post, status):
        text = message["content"]
        assert len(text) <= 2000
        assert not any(unicodedata.category(ch) == "Cc" and ch != "\n" for ch in text)
        assert "@\u200beveryone" in text and "@\u200bhere" in text
        assert pings(message, member) == [], message["allowed_mentions"]
        assert [u["id"] for u in message["mentions"]] in ([], [str(member)])
    assert post["allowed_mentions"]["parse"] == [] and not post["allowed_mentions"].get("roles")
    assert post["content"].endswith("react 🔁 for another take")  # the prompt was cut, not the details
    # The file is named by the job id only, in what Discord stored and in what the bot uploaded.
    assert [a["filename"] for a in post["attachments"]] == [f"videobot-{job_id}.mp4"]
    uploads = [f.filename for r in h.fd.requests for f in r.files if r.status == 200]
    assert uploads and all(re.fullmatch(r"videobot-\d+\.mp4", name) for name in uploads), uploads
    assert await ledger_kinds(h, job_id) == [("charge", -1)]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"seed": -1}, "seed must be a whole number from 0 to 4294967295"),
        ({"duration": 0.0}, "duration must be positive"),
        ({"duration": -3.0}, "duration must be positive"),
        ({"duration": 1e300}, "choose a duration between"),
    ],
)
async def test_out_of_range_options_are_refused_privately_and_charge_nothing(
    h: BotHarness, options: dict, expected: str
) -> None:
    user = h.members[0]
    used, public = await h.balance_used(user), len(h.messages())
    interaction = await h.slash(user, "video", prompt="a cat", **options)
    text = await answer(h, interaction)
    assert expected in text, text
    assert interaction.ephemeral and interaction.original["ephemeral"]
    assert "Traceback" not in text and "ref " not in text
    assert await h.balance_used(user) == used and len(h.messages()) == public
    assert await h.jobs(user) == []


async def test_reaction_spam_queues_one_rerun_per_cooldown_each_charged_once(h: BotHarness) -> None:
    _, parent_id = await queue_video(h, h.member_id, "a spinning top")
    [post] = await h.wait_for(lambda: result_posts(h, parent_id), 60, "the video post")
    await h.wait_job(parent_id, "delivered", 15)
    await h.wait_for(lambda: h.fd.message(post["id"]).get("reactions"), 10, "the bot's 🔁")
    spammer, mid = h.members[1], int(post["id"])
    start = time.time()
    while time.time() - start < 3:  # ten add/remove pairs a second
        await h.react(spammer, mid, "🔁")
        await h.fd.remove_reaction(spammer, h.channel_id, mid, "🔁")
        await asyncio.sleep(0.1)
    end = time.time()
    windows = {int(t // RERUN_COOLDOWN_SECONDS) for t in (start, end + 1)}
    await h.wait_for(
        lambda: h.bot.log(since_start=True).count("inside the cooldown") >= 25,
        20,
        "every spam reaction handled",
    )
    reruns = [j for j in await h.jobs(spammer) if j.parent_job_id == parent_id]
    assert 1 <= len(reruns) <= len(windows), [(j.id, j.idempotency_key) for j in reruns]
    for job in reruns:
        await h.wait_for(lambda j=job: result_posts(h, j.id), 60, f"rerun {job.id} posted")
        assert len(result_posts(h, job.id)) == 1
        assert await ledger_kinds(h, job.id) == [("charge", -1)]
    assert await h.balance_used(spammer) == len(reruns)


async def test_no_token_in_the_worker_log_at_debug(h: BotHarness) -> None:
    assert h.worker_env.get("VIDEOBOT_LOG_LEVEL", "DEBUG") == "DEBUG"  # the harness runs it at DEBUG
    _, job_id = await queue_video(h, h.other_id, "a kite in the wind")
    await h.wait_job(job_id, "delivered", 60)
    log_text = h.worker.log()
    assert f"job {job_id} done in" in log_text
    assert h.fd.token not in log_text
    assert h.fd.interactions
    for interaction in h.fd.interactions:
        assert interaction.token not in log_text
