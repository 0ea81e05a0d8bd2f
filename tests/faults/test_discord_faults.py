"""Discord misbehaving, and the database locked: what members see, and that nothing is lost or charged twice.

Already covered elsewhere (not repeated here): 429 on progress edits, a result after the interaction
token expired (tests/e2e/test_slow_jobs.py), the database unreachable (tests/e2e/test_postgres.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.harness import BotHarness, shared_harness
from tests.fakediscord import DROP
from videobot.models import Job

from .helpers import answer, ledger_kinds, queue_video, result_posts, worker_paused

pytestmark = pytest.mark.asyncio(loop_scope="module")

ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    harness = BotHarness(
        tmp_path_factory.mktemp("faults-discord"),
        worker=True,
        bot_env={"VIDEOBOT_DEFAULT_QUOTA": "50", "VIDEOBOT_MAX_QUEUED_PER_USER": "10"},
        common_env={"VIDEOBOT_LOG_LEVEL": "INFO"},
        extra_members=8,
    )
    async with shared_harness(harness) as started:
        yield started


def hold_write_lock(h: BotHarness, seconds: float) -> None:
    """Hold the bot's SQLite write lock for ``seconds`` from another connection (another process would)."""
    conn = sqlite3.connect(h.data_dir / "videobot.db", isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        time.sleep(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def status_recorded(h: BotHarness, job_id: int, timeout: float = 30.0) -> Job:
    """The job once its public status message is recorded (it is posted after the member's answer)."""
    deadline = time.monotonic() + timeout
    while not (job := await h.job(job_id)).status_message_id:
        assert time.monotonic() < deadline, f"job {job_id}: no status message after {timeout} s"
        await asyncio.sleep(0.1)
    return job


async def delivered_once(h: BotHarness, job_id: int, timeout: float = 60.0) -> dict:
    """The job's one public result post (nothing hidden in an ephemeral message), charged once."""
    job = await h.wait_job(job_id, ("delivered", "undeliverable"), timeout)
    assert result_posts(h, job_id, ephemeral=True) == [], "the video went to an ephemeral message"
    [post] = result_posts(h, job_id)
    assert job.status == "delivered"
    assert job.result_message_id == int(post["id"])
    assert await ledger_kinds(h, job_id) == [("charge", -1)]
    return post


async def test_5xx_storm_on_posting_and_editing_still_delivers_exactly_once(h: BotHarness) -> None:
    fd = h.fd
    # More 502s than discord.py retries (5 tries): the bot's own retry must look before posting again.
    post_storm = fd.inject("POST", r"^/webhooks/\d+/[^/]+$", 502, count=6)
    edit_storm = fd.inject("PATCH", r"^/channels/\d+/messages/\d+$", 500, count=2)
    _, job_id = await queue_video(h, h.member_id, "a lighthouse in a storm")
    await delivered_once(h, job_id, 90)
    job = await status_recorded(h, job_id)
    # The status edits may come after the post (they wait for the channel's edit budget): the final
    # text gets through the two 500s.
    await h.wait_for(lambda: "✅ done" in fd.message(job.status_message_id)["content"], 30, "final status")
    assert post_storm.hits == 6 and edit_storm.hits == 2


async def test_429_storm_during_a_burst_acknowledges_in_time_and_delivers_each_once(h: BotHarness) -> None:
    fd = h.fd
    faults = [
        # Fewer than discord.py's 5 tries per request, so every request gets through in the end.
        fd.inject("POST", r"^/channels/\d+/messages$", 429, count=4, retry_after=0.3),
        # The answer: the first response itself (the database is quick here).
        fd.inject("POST", r"^/interactions/\d+/[^/]+/callback$", 429, count=4, retry_after=0.3),
        fd.inject("PATCH", r"^/channels/\d+/messages/\d+$", 429, count=4, retry_after=0.3),
        fd.inject("POST", r"^/webhooks/\d+/[^/]+$", 429, count=4, retry_after=0.3),
    ]
    with worker_paused(h):  # results racing the delayed answers: see the test below
        interactions = [
            await h.slash(user, "video", prompt=f"a paper crane {n}") for n, user in enumerate(h.members[:5])
        ]
        await h.wait_for(lambda: all(i.initial for i in interactions), 10, "5 acknowledgements")
        assert max(i.ack_latency for i in interactions) < 3
        texts = await asyncio.gather(*(answer(h, i, 30) for i in interactions))
    assert all(t.startswith("Queued as job #") for t in texts), texts
    job_ids = [int(t.split("#", 1)[1].split(" ", 1)[0]) for t in texts]
    for job_id in job_ids:
        await delivered_once(h, job_id, 90)
    # Each status message ends "✅ done" (the final edits queue for the channel's edit budget).
    for job_id in job_ids:
        job = await status_recorded(h, job_id)
        await h.wait_for(lambda j=job: "✅ done" in fd.message(j.status_message_id)["content"], 30, "final")
    assert [f.hits for f in faults] == [4, 4, 4, 4]


async def test_result_ready_before_the_rate_limited_answer_is_still_posted_publicly(h: BotHarness) -> None:
    # The public status message waits out a 429 (a busy channel), so the "Queued as…" answer to the
    # deferred (ephemeral) response comes late, while the tiny job is already done. Discord fills a
    # still-loading deferred response with the first follow-up: sent now, it would put the video in the
    # requester's ephemeral message, seen by nobody else.
    fd = h.fd
    slow = fd.inject("POST", r"^/channels/\d+/messages$", 429, count=1, retry_after=3.0)
    user = h.members[7]
    interaction = await h.slash(user, "video", prompt="a hummingbird at a feeder")
    await interaction.acknowledged(3)
    deadline = time.monotonic() + 20
    while not (jobs := await h.jobs(user)):
        assert time.monotonic() < deadline, "no job"
        await asyncio.sleep(0.05)
    job_id = jobs[0].id
    await delivered_once(h, job_id)
    await h.wait_for(lambda: slow.hits == 1 and interaction.original.get("content"), 20, "the answer")
    assert f"job #{job_id}" in interaction.original["content"]
    assert interaction.original["ephemeral"] and not interaction.original["attachments"]


async def test_a_late_ready_note_is_in_the_requesters_language(h: BotHarness) -> None:
    # A slow database makes the bot defer ("thinking…"); Discord then loses both the "Queued as…" edit and
    # the error handler's (404 here), so the member's deferred response is still loading when the video
    # is ready. Only the member sees it: the bot's note there is in their language (Japanese), not the
    # server's (English).
    fd = h.fd
    user = h.members[6]
    lost = fd.inject("PATCH", r"^/webhooks/\d+/[^/]+/messages/@original$", 404, count=None, code=10008)
    before = h.bot.log(since_start=True).count("could not tell")
    with worker_paused(h):
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            conn = sqlite3.connect(h.data_dir / "videobot.db", isolation_level=None, timeout=30)
            try:
                conn.execute("BEGIN IMMEDIATE")
                held.set()
                release.wait(10)
                conn.execute("ROLLBACK")
            finally:
                conn.close()

        holder = asyncio.create_task(asyncio.to_thread(hold))
        assert await asyncio.to_thread(held.wait, 10)
        try:
            interaction = await fd.slash(
                h.guild_id, h.channel_id, user, "video", {"prompt": "a koi pond in the rain"}, locale="ja"
            )
            body = await interaction.acknowledged(3)
            assert body["type"] == 5, body  # deferred: the database was busy
        finally:
            release.set()
            await holder
        await h.wait_for(
            lambda: h.bot.log(since_start=True).count("could not tell") > before, 30, "both edits lost"
        )
        lost.cancel()
        [job] = [j for j in await h.jobs(user) if j.idempotency_key == f"interaction:{interaction.id}"]
    post = await delivered_once(h, job.id)
    assert post["content"]  # the public post itself follows the server's language (English)
    edits = [
        r.json.get("content", "")
        for r in fd.requests_to("PATCH", "/webhooks/{application_id}/{token}/messages/@original")
        if not r.fault and r.path.split("/")[3] == interaction.token
    ]
    assert edits == [f"動画（ジョブ #{job.id}）ができました。下に投稿しています。"], edits
    assert interaction.original is not None and interaction.original["content"] == edits[0]


async def test_missing_attach_permission_tells_the_member_and_never_posts(h: BotHarness) -> None:
    fd = h.fd
    with worker_paused(h):
        interaction, job_id = await queue_video(h, h.other_id, "a snowy owl at night")
        fd.expire_token(interaction)  # the follow-up would need no permission: post in the channel instead
        fd.set_channel_overwrite(h.channel_id, fd.bot_user_id, deny=ATTACH_FILES, type=1)
    try:
        job = await h.wait_job(job_id, "undeliverable", 60)
    finally:
        fd.set_channel_overwrite(h.channel_id, fd.bot_user_id, deny=0, type=1)
    assert "missing the permission" in job.error_message
    job = await status_recorded(h, job_id)
    await h.wait_for(
        lambda: "missing the permission" in fd.message(job.status_message_id)["content"],
        20,
        "status says why",
    )
    refused = [r for r in fd.requests_to("POST", "/channels/{channel_id}/messages") if r.status == 403]
    assert len(refused) == 1 and refused[0].response["code"] == 50013  # not retried: it cannot get better
    assert result_posts(h, job_id) == []
    assert (await ledger_kinds(h, job_id)).count(("charge", -1)) == 1


async def test_channel_deleted_before_delivery_is_undeliverable_and_the_bot_keeps_serving(
    h: BotHarness,
) -> None:
    fd = h.fd
    other = fd.add_channel(h.guild_id, "short-lived")
    with worker_paused(h):
        interaction = await fd.slash(h.guild_id, other, h.other_id, "video", {"prompt": "a sandcastle"})
        text = await answer(h, interaction)
        job_id = int(text.split("#", 1)[1].split(" ", 1)[0])
        fd.expire_token(interaction)
        fd.delete_channel(other)
    job = await h.wait_job(job_id, "undeliverable", 60)
    assert job.error_message == "The channel no longer exists."
    # The result post was refused once and not retried (the public status message, posted after the
    # answer, may have met the deleted channel too: it is given up the same way).
    posts = [
        r
        for r in fd.requests
        if r.method == "POST"
        and r.path == f"/channels/{other}/messages"
        and (r.json or {}).get("nonce") == f"job-{job_id}"
    ]
    assert [r.status for r in posts] == [404]
    assert (await ledger_kinds(h, job_id)).count(("charge", -1)) == 1
    # The next member is served as usual.
    _, next_id = await queue_video(h, h.member_id, "a sandcastle, again")
    await delivered_once(h, next_id)


async def test_status_message_deleted_meanwhile_does_not_stop_the_result(h: BotHarness) -> None:
    fd = h.fd
    with worker_paused(h):
        _, job_id = await queue_video(h, h.members[5], "a slow river")
        job = await status_recorded(h, job_id)  # posted after the answer, in the background
        gone = fd.inject(
            "PATCH", rf"^/channels/\d+/messages/{job.status_message_id}$", 404, code=10008, count=None
        )
    try:
        await delivered_once(h, job_id)
    finally:
        gone.cancel()
    assert gone.hits <= 3, f"{gone.hits} edits of a message Discord said is gone"


async def test_file_too_large_for_the_server_now_is_told_not_lost(h: BotHarness) -> None:
    fd = h.fd
    guild = fd.guild(h.guild_id)
    with worker_paused(h):
        interaction, job_id = await queue_video(h, h.members[6], "a firework over a lake")
        fd.expire_token(interaction)
        guild.upload_limit = 1024  # the server lost its boost meanwhile
    try:
        job = await h.wait_job(job_id, "undeliverable", 60)
    finally:
        guild.upload_limit = None
    assert "larger than this server's upload limit" in job.error_message
    refused = [r for r in fd.requests_to("POST", "/channels/{channel_id}/messages") if r.status == 413]
    assert refused and refused[-1].response["code"] == 40005
    job = await status_recorded(h, job_id)
    await h.wait_for(
        lambda: "upload limit" in fd.message(job.status_message_id)["content"], 20, "status says why"
    )
    assert result_posts(h, job_id) == []
    assert (await ledger_kinds(h, job_id)).count(("charge", -1)) == 1


async def test_gateway_drops_mid_burst_lose_no_command(h: BotHarness) -> None:
    fd = h.fd
    users = h.members[:6]
    interactions = []
    for n, user in enumerate(users):
        interactions.append(await h.slash(user, "video", prompt=f"a tide pool {n}"))
        if n == 2:
            await fd.drop_gateway()  # the bot RESUMEs; what was sent meanwhile is replayed
    texts = await asyncio.gather(*(answer(h, i, 30) for i in interactions))
    assert all(t.startswith("Queued as job #") for t in texts), texts
    assert max(i.ack_latency for i in interactions) < 3
    assert fd.gateway.resumes
    # A session Discord refuses to resume: the bot identifies again; jobs already queued still arrive.
    await fd.drop_gateway(resumable=False)
    await fd.wait_until_ready(30)
    _, last = await queue_video(h, h.member_id, "a tide pool after the storm")
    for job_id in [int(t.split("#", 1)[1].split(" ", 1)[0]) for t in texts] + [last]:
        await delivered_once(h, job_id, 90)


async def test_sqlite_write_lock_for_5_s_during_a_burst(h: BotHarness) -> None:
    locker = asyncio.create_task(asyncio.to_thread(hold_write_lock, h, 5))
    await asyncio.sleep(0.3)
    interactions = [
        await h.slash(user, "video", prompt=f"a locked door {n}") for n, user in enumerate(h.members[:6])
    ]
    await h.wait_for(lambda: all(i.initial for i in interactions), 10, "acknowledgements")
    assert not locker.done(), "the lock was released before the burst was acknowledged"
    assert max(i.ack_latency for i in interactions) < 3
    # Queueing waits for the lock: each member gets the private "thinking…" in time, then the note.
    assert all(i.response_type == 5 and i.ephemeral for i in interactions)
    texts = await asyncio.gather(*(answer(h, i, 40) for i in interactions))
    await locker
    assert all(t.startswith("Queued as job #") for t in texts), texts
    assert "database is locked" not in h.bot.log(since_start=True)
    for job_id in [int(t.split("#", 1)[1].split(" ", 1)[0]) for t in texts]:
        await delivered_once(h, job_id, 90)


async def test_a_failed_defer_still_queues_once_and_posts_the_status_message(h: BotHarness) -> None:
    # The database is slow (a 2 s write lock), so /video defers after its inline second, and Discord
    # refuses that defer (as it does once the 3 s are over). The job is still queued, charged once,
    # and its public status message is posted at once, not only by the minute's sweep.
    refused = h.fd.inject("POST", r"^/interactions/\d+/[^/]+/callback$", 404, count=2, code=10062)

    user = h.members[6]
    before = {j.id for j in await h.jobs(user)}
    with worker_paused(h):
        locker = asyncio.create_task(asyncio.to_thread(hold_write_lock, h, 2))
        await asyncio.sleep(0.3)
        interaction = await h.slash(user, "video", prompt="an unanswered heron")
        await locker
        deadline = time.monotonic() + 20
        while not (jobs := [j for j in await h.jobs(user) if j.id not in before]):
            assert time.monotonic() < deadline, "no job"
            await asyncio.sleep(0.1)
        [job] = jobs
        assert refused.hits >= 1 and interaction.initial is None  # the member got no answer
        recorded = await status_recorded(h, job.id, timeout=15)  # well before the 60 s sweep
        assert h.fd.message(recorded.status_message_id) is not None
    assert await ledger_kinds(h, job.id) == [("charge", -1)]
    await delivered_once(h, job.id, 90)


def lost_answers(h: BotHarness, job_id: int) -> list[Any]:
    """The job's result follow-ups that Discord made and whose answer was lost."""
    name = f"videobot-{job_id}.mp4"
    return [
        r
        for r in h.fd.requests_to("POST", "/webhooks/{application_id}/{token}")
        if r.answer_lost and any(a["filename"] == name for a in r.response["attachments"])
    ]


async def test_follow_up_made_but_its_answer_lost_is_posted_once(h: BotHarness) -> None:
    """Discord made the result's follow-up, then the connection dropped before the answer: the bot does
    not know whether it exists, so it looks in the channel before posting again (follow-ups have no
    nonce) and keeps the one Discord made. Without that look the video is posted twice."""
    fd = h.fd
    with worker_paused(h):
        _, job_id = await queue_video(h, h.members[0], "a kite over the dunes")
        lost = fd.inject("POST", r"^/webhooks/\d+/[^/]+$", DROP, after=True)
    try:
        post = await delivered_once(h, job_id, 90)
    finally:
        lost.cancel()
    assert lost.hits == 1 and "webhook_id" in post  # the follow-up made first is the one kept
    [made] = lost_answers(h, job_id)
    assert made.response["id"] == post["id"]
    await asyncio.sleep(3)  # later delivery rounds (and the retry's backoff) post nothing more
    assert len(result_posts(h, job_id)) == 1


async def channel_post_after_token_expired(
    h: BotHarness, user: int, prompt: str, status: int
) -> tuple[int, Any]:
    """Queue a video whose result goes to the channel (token expired), with the result's channel post
    answered ``status`` after Discord made it (the public status message is posted before)."""
    fd = h.fd
    with worker_paused(h):
        interaction, job_id = await queue_video(h, user, prompt)
        await status_recorded(h, job_id)
        fd.expire_token(interaction)
        lost = fd.inject("POST", rf"^/channels/{h.channel_id}/messages$", status, after=True)
    return job_id, lost


async def test_channel_post_made_then_502_is_one_message_through_the_nonce(h: BotHarness) -> None:
    """A 502 after Discord made the channel post: discord.py sends the request again with the same nonce
    and ``enforce_nonce``, and Discord answers with the message it made: one post."""
    job_id, lost = await channel_post_after_token_expired(h, h.members[1], "a heron in the reeds", 502)
    try:
        post = await delivered_once(h, job_id, 90)
    finally:
        lost.cancel()
    assert lost.hits == 1 and "webhook_id" not in post
    sent = [
        r
        for r in h.fd.requests_to("POST", "/channels/{channel_id}/messages")
        if any(f.filename == f"videobot-{job_id}.mp4" for f in r.files)
    ]
    assert [r.answer_lost for r in sent] == [True, False]
    assert {r.response["id"] for r in sent} == {post["id"]}
    assert all(r.json["enforce_nonce"] is True for r in sent)


async def test_channel_post_made_then_dropped_is_looked_for_after_the_nonce_is_forgotten(
    h: BotHarness,
) -> None:
    """The connection dropped after Discord made the channel post and the bot's retry comes after Discord
    forgot the nonce (a long outage): the bot looks before posting again and keeps the message made."""
    fd = h.fd
    window = fd.nonce_window
    job_id, lost = await channel_post_after_token_expired(h, h.members[2], "a fox in the snow", DROP)
    fd.nonce_window = 0.5  # the bot's first retry comes 2 s later
    try:
        post = await delivered_once(h, job_id, 90)
    finally:
        lost.cancel()
        fd.nonce_window = window
    assert lost.hits == 1
    sent = [
        r
        for r in fd.requests_to("POST", "/channels/{channel_id}/messages")
        if any(f.filename == f"videobot-{job_id}.mp4" for f in r.files)
    ]
    assert [r.answer_lost for r in sent] == [True]  # not sent again
    assert sent[0].response["id"] == post["id"]
    await asyncio.sleep(3)
    assert len(result_posts(h, job_id)) == 1


async def test_follow_up_made_then_502_is_posted_once(h: BotHarness) -> None:
    """A 502 after Discord made the result's follow-up (an edge that lost the answer): discord.py would
    send the follow-up again at once (it has no nonce) and post the video twice; the bot looks first."""
    fd = h.fd
    with worker_paused(h):
        _, job_id = await queue_video(h, h.members[3], "a kite over the sea")
        lost = fd.inject("POST", r"^/webhooks/\d+/[^/]+$", 502, after=True)
    try:
        post = await delivered_once(h, job_id, 90)
    finally:
        lost.cancel()
    assert lost.hits == 1 and "webhook_id" in post
    [made] = lost_answers(h, job_id)
    assert made.response["id"] == post["id"] and made.status == 502
    await asyncio.sleep(3)
    assert len(result_posts(h, job_id)) == 1


async def test_a_members_message_named_like_the_result_is_not_taken_for_the_post(h: BotHarness) -> None:
    """The result's follow-up got no answer (the connection dropped before Discord made it), so the bot
    looks for an earlier post before sending again. A member's message in the channel carrying the
    result's file name and footer is not the bot's: the video is still posted, and that post is recorded."""
    fd = h.fd
    user, prankster = h.members[4], h.members[5]
    with worker_paused(h):
        _, job_id = await queue_video(h, user, "a seal on a rock")
        fake = fd.post_user_message(
            prankster, h.channel_id, f"-# job #{job_id} · tiny", files=[(f"videobot-{job_id}.mp4", b"\0")]
        )
        dropped = fd.inject("POST", r"^/webhooks/\d+/[^/]+$", DROP)
    try:
        job = await h.wait_job(job_id, ("delivered", "undeliverable"), 90)
    finally:
        dropped.cancel()
    assert dropped.hits == 1 and job.status == "delivered"
    [post] = [m for m in result_posts(h, job_id) if m["author"]["id"] == str(fd.bot_user_id)]
    assert job.result_message_id == int(post["id"]) != fake
    assert "webhook_id" in post and post["content"].startswith(f"<@{user}>")


async def test_channel_post_made_then_dropped_without_history_access_is_one_message_through_the_job_nonce(
    h: BotHarness,
) -> None:
    """The connection dropped after Discord made the channel post, and the bot may not read the channel's
    history, so it cannot look. Its next try (a new request) carries the job's own nonce, and Discord,
    which remembers it for a few minutes, answers with the message it made: one post."""
    fd = h.fd
    job_id, lost = await channel_post_after_token_expired(h, h.members[6], "a lynx in the pines", DROP)
    fd.set_channel_overwrite(h.channel_id, fd.bot_user_id, deny=READ_MESSAGE_HISTORY, type=1)
    try:
        post = await delivered_once(h, job_id, 90)
    finally:
        lost.cancel()
        fd.set_channel_overwrite(h.channel_id, fd.bot_user_id, deny=0, type=1)
    sent = [
        r
        for r in fd.requests_to("POST", "/channels/{channel_id}/messages")
        if any(f.filename == f"videobot-{job_id}.mp4" for f in r.files)
    ]
    assert [r.status for r in sent] == [DROP, 200] and {r.response["id"] for r in sent} == {post["id"]}
    assert [r.json["nonce"] for r in sent] == [f"job-{job_id}"] * 2
    assert "cannot read the channel history" in h.bot.log(since_start=True)
