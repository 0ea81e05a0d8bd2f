"""Quotas, bursts, /queue and /cancel of queued jobs: the real bot, no worker (jobs stay queued)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from .harness import BotHarness, assert_schema_clean, register, unregister

pytestmark = pytest.mark.asyncio(loop_scope="module")

QUOTA = 2


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    async with BotHarness(
        tmp_path_factory.mktemp("e2e-limits"),
        worker=False,
        bot_env={"VIDEOBOT_DEFAULT_QUOTA": str(QUOTA), "VIDEOBOT_MAX_QUEUED_PER_USER": "3"},
        extra_members=11,
    ) as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)


async def answer(h: BotHarness, interaction, timeout: float = 15.0) -> str:  # type: ignore[no-untyped-def]
    """The text the (ephemeral) deferred response became."""
    await interaction.acknowledged(3)
    await h.wait_for(
        lambda: (interaction.original or {}).get("content"),
        timeout,
        f"answer to interaction {interaction.id}",
    )
    return interaction.original["content"]


async def test_quota_refusal_says_when_credits_come_back(h: BotHarness) -> None:
    user = h.members[0]
    for i in range(QUOTA):
        text = await answer(h, await h.slash(user, "video", prompt=f"a dragon kite {i}"))
        assert text.startswith("Queued as job #"), text
        await h.with_status_message(int(re.search(r"job #(\d+)", text)[1]))  # type: ignore[index]
    public = len(h.messages())
    refused = await h.slash(user, "video", prompt="one too many")
    text = await answer(h, refused)
    assert refused.ephemeral and refused.original["ephemeral"]
    assert f"used your {QUOTA} video credits" in text
    assert re.search(r"<t:\d+:R>", text), text  # a Discord timestamp: "in 23 hours"
    assert len(h.messages()) == public  # nothing public about a refusal
    assert len(await h.jobs(user)) == QUOTA
    assert await h.balance_used(user) == QUOTA


async def test_burst_of_50_from_10_users_is_acknowledged_and_limited(h: BotHarness) -> None:
    users = h.members[1:10]  # 9 members who have not used anything
    users.append(h.rolemod_id)
    interactions = []
    for i in range(50):
        interactions.append(await h.slash(users[i % 10], "video", prompt=f"burst {i}"))
    await h.wait_for(lambda: all(i.initial for i in interactions), 10, "50 acknowledgements")
    latencies = sorted(i.ack_latency for i in interactions)
    assert latencies[-1] < 3, latencies
    assert all(i.ephemeral for i in interactions)
    texts = await asyncio.gather(*(answer(h, i, 60) for i in interactions))
    accepted = Counter(i.user_id for i, t in zip(interactions, texts, strict=True) if t.startswith("Queued"))
    refused = [t for t in texts if not t.startswith("Queued")]
    assert accepted == dict.fromkeys(users, QUOTA)
    assert len(refused) == 50 - 10 * QUOTA and all("video credit" in t for t in refused)
    for user in users:
        jobs = await h.jobs(user)
        ledger = await h.ledger(user)
        assert len(jobs) == QUOTA == len(ledger)
        assert sorted(e.job_id for e in ledger) == [j.id for j in jobs]
    # Every accepted job got its public status message, with its queue position (posted after the
    # answers, at the channel's pace).
    status_ids = [
        (await h.with_status_message(j.id, 120)).status_message_id for u in users for j in await h.jobs(u)
    ]
    assert all("in the queue" in h.fd.message(mid)["content"] for mid in status_ids)


async def test_queue_lists_my_jobs_and_cancel_refunds_a_queued_job(h: BotHarness) -> None:
    user = h.member_id
    first = await answer(h, await h.slash(user, "video", prompt="a snail racing a turtle"))
    second = await answer(h, await h.slash(user, "video", prompt="a turtle racing a snail"))
    first_id = int(re.search(r"job #(\d+)", first)[1])
    second_id = int(re.search(r"job #(\d+)", second)[1])

    listing = await answer(h, await h.slash(user, "queue"))
    assert f"job #{first_id}: #" in listing and f"job #{second_id}: #" in listing
    assert "waiting in the queue" in listing

    # /cancel without a job number: my latest one, cancelled and refunded at once.
    text = await answer(h, await h.slash(user, "cancel"))
    assert f"Cancelled job #{second_id}" in text and "refunded" in text
    job = await h.with_status_message(second_id)
    assert job.status == "cancelled"
    kinds = [(e.job_id, e.kind, e.amount) for e in await h.ledger(user)]
    assert (second_id, "charge", -1) in kinds and (second_id, "refund", 1) in kinds
    # The public status message says so.
    await h.wait_for(
        lambda: "refunded" in h.fd.message(job.status_message_id)["content"], 10, "status says cancelled"
    )

    # Someone else's job: not found for a member, cancelled for a moderator (Manage Server).
    text = await answer(h, await h.slash(h.other_id, "cancel", job=first_id))
    assert "can't find a job" in text
    assert (await h.job(first_id)).status == "queued"
    text = await answer(h, await h.slash(h.mod_id, "cancel", job=first_id))
    assert f"Cancelled job #{first_id}" in text
    assert (await h.job(first_id)).status == "cancelled"
    assert await h.balance_used(user) == 0

    # A member with the configured moderator role may cancel too (checked at run time).
    third = await answer(h, await h.slash(user, "video", prompt="a snail in a hurry"))
    third_id = int(re.search(r"job #(\d+)", third)[1])
    text = await answer(h, await h.slash(h.rolemod_id, "cancel", job=third_id))
    assert "can't find a job" in text  # no moderator role configured yet
    await h.set_guild_config(moderator_role_id=h.moderator_role_id)
    text = await answer(h, await h.slash(h.rolemod_id, "cancel", job=third_id))
    assert f"Cancelled job #{third_id}" in text and (await h.job(third_id)).status == "cancelled"


async def test_sound_asked_of_a_silent_model_is_refused_and_charges_nothing(h: BotHarness) -> None:
    user = h.members[10]  # a member no other test here queues for
    jobs, used = len(await h.jobs(user)), await h.balance_used(user)
    interaction = await h.slash(user, "video", prompt="waves on the rocks", audio=True)
    text = await answer(h, interaction)
    assert interaction.original["ephemeral"]
    assert "without sound" in text and "audio option" in text, text
    assert not [m for m in h.messages() if "waves on the rocks" in m["content"]]  # nothing public
    assert len(await h.jobs(user)) == jobs and await h.balance_used(user) == used
    # audio:false on the same model is just a silent video.
    text = await answer(h, await h.slash(user, "video", prompt="waves on the rocks", audio=False))
    assert text.startswith("Queued as job #"), text
