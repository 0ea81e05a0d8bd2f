"""/video with ``variations`` end to end: the real bot and a real worker process (tiny model) against the
fake Discord. One job, N videos in ONE message, N credits; cancel refunds all N; a variation the GPU
cannot make is refunded once and the message says so.

The worker runs as ``tests.e2e.oom_worker``: the real ``videobot worker`` whose pipeline raises the
out-of-memory error for one chosen seed (a CPU cannot run out of GPU memory); everything else is real.
"""

from __future__ import annotations

import asyncio
import io
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import pytest_asyncio

from .harness import WORKER_READY, BotHarness, assert_schema_clean, register, unregister

pytestmark = pytest.mark.asyncio(loop_scope="module")

OOM_SEED = 777_001
STEP_DELAY = 0.5


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    async with BotHarness(tmp_path_factory.mktemp("e2e-variations")) as harness:
        register(harness)
        try:
            env = harness._env(
                {
                    "VIDEOBOT_HEARTBEAT_SECONDS": "2",
                    "VIDEOBOT_LEASE_SECONDS": "30",
                    "VIDEOBOT_TEST_STEP_DELAY": str(STEP_DELAY),
                    "OOM_SEEDS": str(OOM_SEED),
                }
            )
            # By path: the package ``tests`` is not installed, and the worker runs in the test's folder.
            script = str(Path(__file__).with_name("oom_worker.py"))
            await harness.worker.start([sys.executable, script], env, harness.tmp_path)
            await harness.worker.wait_log(WORKER_READY, 90)
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)
    assert harness.fd.problems() == []


def frames_of(data: bytes) -> tuple[str, np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    return codec, frames


def posts_of(h: BotHarness, job_id: int) -> list[dict[str, Any]]:
    """Messages carrying any of the job's files."""
    return [
        m
        for m in h.messages()
        if any(re.fullmatch(rf"videobot-{job_id}(-\d)?\.mp4", a["filename"]) for a in m["attachments"])
    ]


async def queue(h: BotHarness, user_id: int, **options: Any) -> int:
    interaction = await h.slash(user_id, "video", **options)
    await interaction.acknowledged(3)
    note = await h.wait_for(
        lambda: re.search(r"Queued as job #(\d+)", (interaction.original or {}).get("content") or ""),
        15,
        "queued note",
    )
    return int(note[1])


async def ledger_of(h: BotHarness, job_id: int) -> list[tuple[str, int]]:
    return sorted((e.kind, e.amount) for e in await h.ledger() if e.job_id == job_id)


async def test_three_variations_are_one_message_with_three_different_videos(h: BotHarness) -> None:
    user = h.member_id
    job_id = await queue(h, user, prompt="a lantern festival over a river", seed=5000, variations=3)
    job = await h.wait_job(job_id, "delivered", 90)
    assert job.params["num_videos"] == 3 and job.cost == 3
    [post] = posts_of(h, job_id)
    assert post["id"] == str(job.result_message_id)
    names = [a["filename"] for a in post["attachments"]]
    assert names == [f"videobot-{job_id}-{i}.mp4" for i in (1, 2, 3)]
    decoded = [frames_of(h.fd.attachment_bytes(a)) for a in post["attachments"]]
    assert [codec for codec, _ in decoded] == ["h264"] * 3
    videos = [f for _, f in decoded]
    assert all(len(v) == job.params["num_frames"] for v in videos)
    # Three different takes (seeds 5000, 5001, 5002), not one video three times.
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(videos[i].astype(int) - videos[j].astype(int)).mean() > 5
    content = post["content"]
    assert "your 3 variations are ready" in content and "seeds 5000, 5001, 5002" in content
    assert "could not be" not in content
    assert await ledger_of(h, job_id) == [("charge", -3)]
    # Posted once; the public status message says what was asked and links the result.
    assert len(posts_of(h, job_id)) == 1
    status = await h.wait_for(
        lambda: (m := h.fd.message(job.status_message_id)) and "✅ done" in m["content"] and m,
        15,
        "final status",
    )
    assert f"asked for 3 variations · job #{job_id}" in status["content"] and post["id"] in status["content"]


async def test_cancel_of_a_running_three_variation_job_refunds_three(h: BotHarness) -> None:
    user = h.other_id
    job_id = await queue(h, user, prompt="a very long train of thought", variations=3)
    await h.wait_job(job_id, "running", 60)
    interaction = await h.slash(user, "cancel", job=job_id)
    await interaction.acknowledged(3)
    await h.wait_for(lambda: (interaction.original or {}).get("content"), 15, "cancel answer")
    job = await h.wait_job(job_id, "cancelled", 30)
    assert job.error_code == "cancelled"
    assert await ledger_of(h, job_id) == [("charge", -3), ("refund", 3)]
    await h.wait_for(
        lambda: "refunded" in (h.fd.message(job.status_message_id) or {}).get("content", ""),
        15,
        "status message says cancelled",
    )
    assert posts_of(h, job_id) == []


async def test_a_variation_that_cannot_be_made_is_refunded_once_and_the_message_says_so(
    h: BotHarness,
) -> None:
    user = h.members[0] if h.members else h.rolemod_id
    # Seeds 777000, 777001, 777002: the GPU "runs out of memory" for the batch and for 777001 alone.
    job_id = await queue(h, user, prompt="three paper cranes", seed=OOM_SEED - 1, variations=3)
    job = await h.wait_job(job_id, "delivered", 120)
    [post] = posts_of(h, job_id)
    names = [a["filename"] for a in post["attachments"]]
    assert names == [f"videobot-{job_id}-1.mp4", f"videobot-{job_id}-3.mp4"]  # the second is missing
    for a in post["attachments"]:
        assert frames_of(h.fd.attachment_bytes(a))[0] == "h264"
    content = post["content"]
    assert "2 of 3 variations were made; 1 could not be (not enough GPU memory)" in content
    assert "1 credit for them was refunded" in content
    assert f"seeds {OOM_SEED - 1}, {OOM_SEED + 1}" in content
    assert job.error_code == "partial"
    assert await ledger_of(h, job_id) == [("charge", -3), ("partial_refund", 1)]
    # The worker batched first, then went one at a time.
    assert "ran out of GPU memory; making them one at a time" in h.worker.log()
    # Once: a bot restart re-reads every job and owes nothing more for this one.
    await h.restart_bot()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        assert len(posts_of(h, job_id)) == 1
    assert await ledger_of(h, job_id) == [("charge", -3), ("partial_refund", 1)]
    assert await h.balance_used(user) == 2
