"""A burst of /video in ONE channel under Discord's rate limits (the fake enforces them): what the
members see. Timings are benchmarks (bench/bench_channel_burst.py), not assertions here."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from .harness import BotHarness, assert_schema_clean, register, unregister

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEMBERS = 25
PER_MEMBER = 2
CREATE = "/channels/{channel_id}/messages"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    async with BotHarness(
        tmp_path_factory.mktemp("e2e-burst"),
        worker=True,
        extra_members=MEMBERS,
        common_env={"VIDEOBOT_LOG_LEVEL": "INFO"},
    ) as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)


def status_posted_at(h: BotHarness, message_id: int) -> float | None:
    return next(
        (
            r.at
            for r in h.fd.requests_to("POST", CREATE)
            if r.status == 200 and str((r.response or {}).get("id")) == str(message_id)
        ),
        None,
    )


async def test_the_answer_comes_before_the_public_status_post(h: BotHarness) -> None:
    # The channel is busy (a 429 holds the next message create for 3 s): the member's answer does
    # not wait for it, and the status message is still posted afterwards.
    slow = h.fd.inject("POST", r"^/channels/\d+/messages$", 429, count=1, retry_after=3.0)
    interaction = await h.slash(h.member_id, "video", prompt="a heron in the reeds")
    await interaction.acknowledged(3)
    text = await h.wait_for(lambda: (interaction.original or {}).get("content"), 20, "the answer")
    job_id = int(re.search(r"Queued as job #(\d+)", text)[1])  # type: ignore[index]
    job = await h.wait_job(job_id, "delivered", 90)
    await h.wait_for(lambda: slow.hits == 1, 20, "the rate-limited status post")
    status_id = await _status_message_id(h, job_id)
    assert interaction.answered_at < status_posted_at(h, status_id)  # type: ignore[operator]
    await h.wait_for(lambda: "✅ done" in h.fd.message(status_id)["content"], 30, "final status")
    assert interaction.original["ephemeral"] and not interaction.original["attachments"]
    assert job.status == "delivered"


async def _status_message_id(h: BotHarness, job_id: int, timeout: float = 60.0) -> int:
    async def recorded() -> int:
        job = await h.job(job_id)
        return job.status_message_id or 0

    deadline = time.monotonic() + timeout
    while not (mid := await recorded()):
        assert time.monotonic() < deadline, f"job {job_id} has no status message"
        await asyncio.sleep(0.2)
    return mid


async def test_fifty_from_twenty_five_members_in_one_channel(h: BotHarness) -> None:
    fd = h.fd
    hits_before = len(fd.rate_limit_hits)
    interactions = [
        await h.slash(h.members[n % MEMBERS], "video", prompt=f"a lantern festival {n}")
        for n in range(MEMBERS * PER_MEMBER)
    ]
    # Every member is answered (privately), before their job's public status message is posted.
    await h.wait_for(lambda: all((i.original or {}).get("content") for i in interactions), 60, "every answer")
    texts = [i.original["content"] for i in interactions]
    assert all(t.startswith("Queued as job #") for t in texts), [t for t in texts if "Queued" not in t]
    assert all(i.original["ephemeral"] for i in interactions)
    job_ids = [int(re.search(r"job #(\d+)", t)[1]) for t in texts]  # type: ignore[index]
    assert len(set(job_ids)) == len(job_ids)

    # Every job is delivered once, publicly; every status message exists and ends "✅ done".
    for job_id in job_ids:
        await h.wait_job(job_id, ("delivered", "undeliverable", "failed"), 300)
    jobs = {j.id: j for j in await h.jobs() if j.id in set(job_ids)}
    assert {j.status for j in jobs.values()} == {"delivered"}
    for job_id in job_ids:
        name = f"videobot-{job_id}.mp4"
        posts = [
            m
            for m in fd.messages(h.channel_id, include_ephemeral=True)
            if any(a["filename"] == name for a in m["attachments"])
        ]
        assert [p["ephemeral"] for p in posts] == [False], f"job {job_id}: {len(posts)} result post(s)"
    deadline = time.monotonic() + 180  # ~5 status posts per 5 s in one channel: about a minute here
    while True:
        jobs = {j.id: j for j in await h.jobs() if j.id in set(job_ids)}
        shown = [fd.message(j.status_message_id) if j.status_message_id else None for j in jobs.values()]
        if all(m is not None and "✅ done" in m["content"] for m in shown):
            break
        assert time.monotonic() < deadline, [m["content"][-30:] if m else None for m in shown]
        await asyncio.sleep(0.5)
    for i, job_id in zip(interactions, job_ids, strict=True):
        assert i.answered_at < status_posted_at(h, jobs[job_id].status_message_id)  # type: ignore[operator]
    # One status message per job (nothing posted twice).
    status_posts = [
        r
        for r in fd.requests_to("POST", CREATE)
        if r.status == 200 and str(r.json.get("nonce", "")).startswith("status-")
    ]
    assert sorted(
        int(r.json["nonce"].split("-")[1]) for r in status_posts if int(r.json["nonce"].split("-")[1]) in jobs
    ) == sorted(job_ids)

    # The channel's buckets were never exceeded: the fake served no 429 for them.
    hits = [x for x in fd.rate_limit_hits[hits_before:] if not x.injected]
    assert [x for x in hits if x.bucket in ("message-create", "message-edit")] == []


async def test_status_posts_still_owed_when_the_bot_restarts_are_posted_after_it(h: BotHarness) -> None:
    fd = h.fd
    members = h.members[:12]
    interactions = [await h.slash(m, "video", prompt=f"a paper boat {n}") for n, m in enumerate(members)]
    await h.wait_for(lambda: all((i.original or {}).get("content") for i in interactions), 60, "answers")
    job_ids = [int(re.search(r"job #(\d+)", i.original["content"])[1]) for i in interactions]  # type: ignore[index]
    pending = [j for j in job_ids if not (await h.job(j)).status_message_id]
    assert pending, "every status message was posted before the restart: nothing was owed"
    await h.restart_bot()  # what this process still owed is in the database: jobs without a status message
    for job_id in job_ids:
        job = await h.with_status_message(job_id, 120)
        assert fd.message(job.status_message_id) is not None
    # Each job's status posts carry its nonce, so Discord itself drops a repeat (a post in flight when
    # the bot stopped); none is missing.
    nonces = [
        str(r.json.get("nonce"))
        for r in fd.requests_to("POST", CREATE)
        if r.status == 200 and str(r.json.get("nonce", "")).startswith("status-")
    ]
    assert {f"status-{j}" for j in job_ids} <= set(nonces)
