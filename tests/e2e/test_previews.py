"""Live previews and the Cancel button, with the real bot and worker on the tiny model against the fake
Discord: the status message shows the render in progress as a picture before the result is posted,
the previews leave the database with the job, and the Cancel button stops a running job for the
requester or a moderator (refunded once), refusing anybody else ephemerally."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from PIL import Image
from sqlalchemy import func, select, update

from bot.ui.texts import NOT_YOURS
from videobot.models import Job, JobPreview

from .harness import BotHarness, assert_schema_clean, register, unregister

pytestmark = pytest.mark.asyncio(loop_scope="module")

STEP_DELAY = 1.5  # seconds per denoising step
WORKER_ENV = {"VIDEOBOT_TEST_STEP_DELAY": str(STEP_DELAY), "VIDEOBOT_PREVIEW_SECONDS": "1"}
EDIT_ROUTE = "/channels/{channel_id}/messages/{message_id}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    # No worker at first: each test makes its job longer (more steps) while it waits, then starts one.
    async with BotHarness(
        tmp_path_factory.mktemp("e2e-previews"), worker=False, bot_env={"VIDEOBOT_DEFAULT_QUOTA": "20"}
    ) as harness:
        register(harness)
        try:
            yield harness
        finally:
            unregister(harness)
    assert_schema_clean(harness)


async def submit_long(h: BotHarness, user_id: int, prompt: str, steps: int) -> Job:
    """/video with the worker stopped; the queued job is given ``steps`` steps, then a worker starts."""
    if h.worker.running:
        await h.stop_worker()
    interaction = await h.slash(user_id, "video", prompt=prompt)
    await interaction.acknowledged(3)
    note = await h.wait_for(
        lambda: re.search(r"Queued as job #(\d+)", (interaction.original or {}).get("content") or ""),
        15,
        "queued note",
    )
    job_id = int(note[1])
    job = await h.job(job_id)
    assert h.db is not None
    async with h.db.transaction() as s:
        await s.execute(
            update(Job).where(Job.id == job_id).values(params={**job.params, "num_inference_steps": steps})
        )
    await h.start_worker(**WORKER_ENV)
    return await h.with_status_message(job_id)


async def preview_rows(h: BotHarness) -> int:
    assert h.db is not None
    async with h.db.sessionmaker() as s:
        return int((await s.execute(select(func.count()).select_from(JobPreview))).scalar_one())


def posts_of(h: BotHarness, job_id: int) -> list[dict]:
    name = f"videobot-{job_id}.mp4"
    return [m for m in h.messages() if any(a["filename"] == name for a in m["attachments"])]


async def test_the_status_message_shows_previews_before_the_result(h: BotHarness) -> None:
    fd = h.fd
    # ~21 s running: several of the editor's 3 s slots, even on a loaded machine.
    job = await submit_long(h, h.member_id, "a lighthouse in a storm", steps=14)
    assert job.status_message_id is not None
    [post] = await h.wait_for(lambda: posts_of(h, job.id), 90, "the video post")
    await h.wait_job(job.id, "delivered", 20)
    status = await h.wait_for(
        lambda: (m := fd.message(job.status_message_id)) and "✅ done" in m["content"] and m,
        20,
        "final status",
    )
    edits = [
        r
        for r in fd.requests_to("PATCH", EDIT_ROUTE)
        if r.path.endswith(str(job.status_message_id)) and r.status == 200
    ]
    with_picture = [r for r in edits if r.files]
    assert len(with_picture) >= 2, [(r.json.get("content"), len(r.files)) for r in edits]
    for r in with_picture:
        [file] = r.files
        assert file.filename == f"preview-{job.id}.webp"
        with Image.open(io.BytesIO(file.data)) as picture:
            picture.load()
            assert picture.format in ("WEBP", "PNG", "JPEG") and min(picture.size) >= 8
        assert re.search(r"step \d+/14", r.json["content"]), r.json["content"]
    # Every preview went out before the video was posted.
    name = f"videobot-{job.id}.mp4"
    [result_request] = [
        r for r in fd.requests if r.status == 200 and any(f.filename == name for f in r.files)
    ]
    assert max(r.at for r in with_picture) < result_request.at
    assert any(a["filename"] == name and a["size"] > 0 for a in post["attachments"])
    # The final text replaced the preview and took the Cancel button away.
    assert status["attachments"] == [] and fd.buttons(status) == []
    assert await preview_rows(h) == 0


async def test_the_cancel_button_stops_a_running_job_for_a_moderator_not_for_others(h: BotHarness) -> None:
    fd = h.fd
    job = await submit_long(h, h.member_id, "a very long river", steps=30)
    assert job.status_message_id is not None
    message = fd.message(job.status_message_id)
    assert message is not None
    [button] = fd.buttons(message)
    assert button["custom_id"] == f"videobot:cancel:{job.id}" and button["label"] == "Cancel"
    running = await h.wait_job(job.id, "running", 30)
    assert running.status == "running"

    # Another member: refused, privately; the job goes on.
    refused = await fd.click(h.guild_id, h.channel_id, h.other_id, job.status_message_id, button["custom_id"])
    await refused.acknowledged(3)
    text = await h.wait_for(lambda: (refused.original or {}).get("content"), 15, "refusal")
    assert text == NOT_YOURS and refused.ephemeral
    await asyncio.sleep(1.0)
    assert (await h.job(job.id)).status == "running" and not (await h.job(job.id)).cancel_requested

    # A moderator (Manage Server): the render stops at its next step after the heartbeat sees it.
    step_at_click = (await h.job(job.id)).progress_step
    clicked = await fd.click(h.guild_id, h.channel_id, h.mod_id, job.status_message_id, button["custom_id"])
    await clicked.acknowledged(3)
    started = time.monotonic()
    text = await h.wait_for(lambda: (clicked.original or {}).get("content"), 15, "cancel answer")
    assert "being made right now" in text and clicked.ephemeral
    ended = await h.wait_job(job.id, "cancelled", 30)
    # Heartbeat (1 s) + the step in progress + one more at most, with room for a busy machine.
    assert time.monotonic() - started < 1.0 + 2 * STEP_DELAY + 5.0
    assert ended.progress_step <= step_at_click + 3, (step_at_click, ended.progress_step)
    kinds = sorted((e.kind, e.amount) for e in await h.ledger(h.member_id) if e.job_id == job.id)
    assert kinds == [("charge", -1), ("refund", 1)]
    status = await h.wait_for(
        lambda: (m := fd.message(job.status_message_id)) and "refunded" in m["content"] and m,
        20,
        "final status",
    )
    assert status["attachments"] == [] and fd.buttons(status) == []
    assert posts_of(h, job.id) == []
    assert await preview_rows(h) == 0


async def test_the_requester_cancels_a_queued_job_with_the_button(h: BotHarness) -> None:
    fd = h.fd
    if h.worker.running:
        await h.stop_worker()
    interaction = await h.slash(h.other_id, "video", prompt="a paper boat")
    await interaction.acknowledged(3)
    note = await h.wait_for(
        lambda: re.search(r"Queued as job #(\d+)", (interaction.original or {}).get("content") or ""),
        15,
        "queued note",
    )
    job = await h.with_status_message(int(note[1]))
    assert job.status_message_id is not None
    [button] = fd.buttons(fd.message(job.status_message_id))  # type: ignore[arg-type]
    clicked = await fd.click(h.guild_id, h.channel_id, h.other_id, job.status_message_id, button["custom_id"])
    await clicked.acknowledged(3)
    text = await h.wait_for(lambda: (clicked.original or {}).get("content"), 15, "cancel answer")
    assert text == f"Cancelled job #{job.id}. The credit was refunded." and clicked.ephemeral
    assert (await h.job(job.id)).status == "cancelled"
    kinds = sorted((e.kind, e.amount) for e in await h.ledger(h.other_id) if e.job_id == job.id)
    assert kinds == [("charge", -1), ("refund", 1)]
    status = await h.wait_for(
        lambda: (m := fd.message(job.status_message_id)) and "refunded" in m["content"] and m,
        20,
        "final status",
    )
    assert fd.buttons(status) == []
