"""End frame and loop end to end: the real bot and worker (the tiny LTX model) against the fake Discord.

``/video image: end_image:`` and ``/video loop:`` post a video charged once, which says what it was made
with; the end picture is fetched, checked and stored like the first one (hostile ones refused privately,
nothing charged), the worker gets it from the database and the video ends on it; a 🔁 keeps both
pictures; a bot killed while fetching it answers after the restart; a model that cannot do it does not
offer the options, and a member whose client still shows them is refused privately with the reason.
"""

from __future__ import annotations

import asyncio
import copy
import io
import os
import re
import time
from collections.abc import AsyncIterator

import av
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image
from sqlalchemy import select

from bot.ui.texts import RESTARTED
from tests.faults.helpers import answer
from videobot.i18n import t
from videobot.images import fit, open_png, pixel_digest, prepare
from videobot.models import Job, JobInput
from videobot.planning import END_IMAGE_REF, IMAGE_REF
from videobot.presets import PRESETS

from .harness import BotHarness, shared_harness
from .test_buttons import open_form
from .test_image import decompression_bomb

pytestmark = pytest.mark.asyncio(loop_scope="module")

MB = 1024 * 1024
FIRST: dict = {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    harness = BotHarness(
        tmp_path_factory.mktemp("e2e-keyframes"),
        worker=True,
        bot_env={"VIDEOBOT_DEFAULT_QUOTA": "20", "VIDEOBOT_MAX_IMAGE_BYTES": str(MB)},
        extra_members=2,
    )
    async with shared_harness(harness) as started:  # asserts fd.problems() == [] (OpenAPI bodies included)
        yield started


def picture(w: int, h: int, colour: tuple[int, int, int]) -> bytes:
    """A smooth picture (a gradient over ``colour``): something H.264 keeps close."""
    im = Image.new("RGB", (w, h))
    im.putdata([(colour[0], (colour[1] + x * 60 // w) % 256, colour[2]) for y in range(h) for x in range(w)])
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def frames_of(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


async def queued_job_id(h: BotHarness, interaction: object) -> tuple[int, str]:
    text = await answer(h, interaction)
    found = re.search(r"Queued as job #(\d+)", text)
    assert found, text
    return int(found[1]), text


async def stored_inputs(h: BotHarness, job_id: int) -> dict[str, bytes]:
    assert h.db is not None
    async with h.db.sessionmaker() as s:
        rows = await s.execute(select(JobInput.kind, JobInput.data).where(JobInput.job_id == job_id))
        return {kind: bytes(data) for kind, data in rows}


async def posted_video(h: BotHarness, job_id: int) -> tuple[dict, Job, np.ndarray]:
    name = f"videobot-{job_id}.mp4"

    def posts() -> list[dict]:
        return [m for m in h.messages() if any(a["filename"] == name for a in m["attachments"])]

    [post] = await h.wait_for(posts, 90, f"the video of job {job_id}")
    job = await h.wait_job(job_id, "delivered", 10)
    frames = frames_of(h.fd.attachment_bytes(post["attachments"][0]))
    assert frames.shape == (job.params["num_frames"], job.params["height"], job.params["width"], 3)
    return post, job, frames


def logged_digest(h: BotHarness, job_id: int, which: str) -> str | None:
    found = re.search(rf"job {job_id}: {which} frame \d+x\d+ pixel sha256 ([0-9a-f]{{64}})", h.worker.log())
    return None if found is None else found[1]


async def charges(h: BotHarness, job_id: int) -> list[tuple[str, int]]:
    return [(e.kind, e.amount) for e in await h.ledger() if e.job_id == job_id]


# ------------------------------------------------------------------ tests
async def test_image_and_end_image_post_a_video_that_goes_from_one_to_the_other(h: BotHarness) -> None:
    first, last = picture(160, 90, (230, 20, 20)), picture(160, 90, (20, 40, 230))
    pics = h.fd.attachment("start.png", first), h.fd.attachment("end.png", last)
    interaction = await h.slash(
        h.member_id, "video", prompt="day turns to night", image=pics[0], end_image=pics[1]
    )
    job_id, text = await queued_job_id(h, interaction)
    assert interaction.ephemeral and "(end frame)" in text, text
    # Both fetched once, at request time, and stored with the job as normalised PNGs.
    assert [h.fd.cdn_requests.count(int(p["id"])) for p in pics] == [1, 1]
    assert await stored_inputs(h, job_id) == {"image": prepare(first).png, "end_image": prepare(last).png}

    post, job, frames = await posted_video(h, job_id)
    assert job.params["verb"] == "image" and job.params["image"] == IMAGE_REF
    assert job.params["end_image"] == END_IMAGE_REF and job.params["loop"] is False
    w, hh = job.params["width"], job.params["height"]
    start_fitted = fit(open_png(prepare(first).png), w, hh)
    end_fitted = fit(open_png(prepare(last).png), w, hh)
    # The worker handed the pipeline these two pictures (their pixel digests, logged per job) …
    assert logged_digest(h, job_id, "first") == pixel_digest(start_fitted)
    assert logged_digest(h, job_id, "last") == pixel_digest(end_fitted)
    # … and the posted video ends on the end picture (within the codec's error), not where it began.
    end_error = mean_diff(frames[-1], np.asarray(end_fitted))
    assert end_error < 6, end_error
    assert mean_diff(frames[0], np.asarray(end_fitted)) > 5 * end_error
    assert "end frame" in post["content"]
    assert await charges(h, job_id) == [("charge", -1)]
    FIRST.update(post=post, first=first, last=last, seed=job.params["seed"])


async def test_a_loop_posts_a_video_that_ends_where_it_starts(h: BotHarness) -> None:
    interaction = await h.slash(h.member_id, "video", prompt="waves roll in", loop=True)
    job_id, text = await queued_job_id(h, interaction)
    assert "(loop)" in text, text
    post, job, frames = await posted_video(h, job_id)
    assert job.params["loop"] is True and job.params["verb"] == "text" and job.params.get("end_image") is None
    assert "loop" in post["content"]
    # Its first and last frames are the same picture (the worker logged one digest for both ends) and in
    # the file they differ by the codec's error only, while the middle of the video moved away from it.
    assert logged_digest(h, job_id, "last") is not None
    seam = mean_diff(frames[0], frames[-1])
    assert seam < 8 and mean_diff(frames[0], frames[len(frames) // 2]) > 2 * seam, seam
    assert await charges(h, job_id) == [("charge", -1)]
    FIRST["loop_post"] = post


async def test_remix_of_a_loop_is_a_loop(h: BotHarness) -> None:
    post = FIRST["loop_post"]
    opened = await open_form(h, h.other_id, post, "remix")
    submitted = await h.fd.submit_modal(opened, {"prompt": "waves roll out"})
    job_id, text = await queued_job_id(h, submitted)
    assert "(Remix of job #" in text and "· loop)" in text, text
    reply, job, frames = await posted_video(h, job_id)
    assert (reply.get("message_reference") or {}).get("message_id") == post["id"]
    assert job.kind == "remix" and job.params["loop"] is True and job.params["prompt"] == "waves roll out"
    assert "Remix of job #" in reply["content"] and "· loop" in reply["content"]
    assert mean_diff(frames[0], frames[-1]) < 8
    assert await charges(h, job_id) == [("charge", -1)]


async def test_rerun_keeps_both_pictures(h: BotHarness) -> None:
    post = FIRST["post"]
    await h.react(h.other_id, int(post["id"]), "🔁")
    deadline = time.monotonic() + 30
    while not (jobs := [j for j in await h.jobs(h.other_id) if j.kind == "rerun"]):
        assert time.monotonic() < deadline, "no rerun queued"
        await asyncio.sleep(0.1)
    [job] = jobs
    assert await stored_inputs(h, job.id) == {
        "image": prepare(FIRST["first"]).png,
        "end_image": prepare(FIRST["last"]).png,
    }
    rerun, job, frames = await posted_video(h, job.id)
    assert job.params["end_image"] == END_IMAGE_REF and job.params["seed"] != FIRST["seed"]
    assert "Rerun of job" in rerun["content"] and "end frame" in rerun["content"]
    end_fitted = fit(open_png(prepare(FIRST["last"]).png), job.params["width"], job.params["height"])
    assert mean_diff(frames[-1], np.asarray(end_fitted)) < 6
    assert await charges(h, job.id) == [("charge", -1)]


@pytest.mark.parametrize(
    ("case", "message"),
    [("bomb", "pixels"), ("not an image", "not a picture I can read"), ("oversize", "too large")],
)
async def test_hostile_end_pictures_are_refused_privately_and_charge_nothing(
    h: BotHarness, case: str, message: str
) -> None:
    data = {
        "bomb": decompression_bomb(),
        "not an image": b"%PDF-1.7\n" + os.urandom(4000),
        "oversize": os.urandom(2 * MB),
    }[case]
    user = h.members[0]
    jobs_before, ledger_before, public_before = len(await h.jobs()), len(await h.ledger()), len(h.messages())
    good = h.fd.attachment("start.png", picture(64, 32, (10, 200, 10)))
    bad = h.fd.attachment("end.png", data)
    text = await answer(h, await h.slash(user, "video", prompt="it moves", image=good, end_image=bad))
    assert message in text and "Please" in text and "Queued" not in text, text
    alone = await answer(h, await h.slash(user, "video", prompt="it moves", end_image=bad))
    assert message in alone and "Queued" not in alone, alone
    assert len(await h.jobs()) == jobs_before and len(await h.ledger()) == ledger_before
    assert len(h.messages()) == public_before  # nothing public


async def test_a_request_whose_bot_died_while_fetching_the_end_picture_is_answered_after_restart(
    h: BotHarness,
) -> None:
    member = h.members[1]
    end = h.fd.attachment("end.png", picture(64, 32, (20, 20, 200)))
    download = h.fd.hold_download(end)
    interaction = await h.fd.slash(
        h.guild_id, h.channel_id, member, "video", {"prompt": "a sunset", "end_image": end}, locale="de"
    )
    await interaction.acknowledged(3)
    await h.wait_for(lambda: int(end["id"]) in h.fd.cdn_requests, 20, "the download")
    await h.kill_bot()
    download.set()
    await h.start_bot()
    text = await answer(h, interaction, timeout=60)
    assert text == t("de", RESTARTED), text
    assert await h.jobs(member) == [] and await h.ledger(member) == []
    # Asked again, it goes through and is charged once.
    job_id, _ = await queued_job_id(h, await h.slash(member, "video", prompt="a sunset", end_image=end))
    _, job, _ = await posted_video(h, job_id)
    assert job.params["end_image"] == END_IMAGE_REF and job.params["verb"] == "text"
    assert await charges(h, job_id) == [("charge", -1)]


async def test_a_model_that_cannot_does_not_offer_them_and_refuses_a_stale_client_privately(
    h: BotHarness,
) -> None:
    guild = h.guild_id
    old = copy.deepcopy(h.fd._find_command(guild, "video"))
    assert old is not None and {"end_image", "loop"} <= {o["name"] for o in old["options"]}
    await h.restart_bot(VIDEOBOT_MODEL="tiny-wan")
    synced = await h.wait_for(
        lambda: (
            (c := h.fd._find_command(guild, "video"))
            and "loop" not in {o["name"] for o in c["options"]}
            and c
        ),
        30,
        "/video synced without end_image and loop",
    )
    assert not {"end_image", "loop"} & {o["name"] for o in synced["options"]}
    with pytest.raises(ValueError):  # Discord itself refuses an option the command does not have
        await h.slash(h.member_id, "video", prompt="waves", loop=True)

    # A member whose client still shows the old /video (commands update lazily) sends them anyway.
    current = synced["options"]
    synced["options"] = old["options"]
    try:
        jobs_before, ledger_before = len(await h.jobs()), len(await h.ledger())
        looped = await h.slash(h.member_id, "video", prompt="waves", loop=True)
        pic = h.fd.attachment("end.png", picture(64, 32, (20, 20, 200)))
        ended = await h.slash(h.member_id, "video", prompt="waves", end_image=pic)
        loop_text, end_text = await answer(h, looped), await answer(h, ended)
    finally:
        synced["options"] = current
    assert loop_text == "The model `tiny-wan` cannot make looping videos; it offers: text.", loop_text
    assert end_text == "The model `tiny-wan` cannot end a video on a given picture; it offers: text.", (
        end_text
    )
    assert looped.ephemeral and ended.ephemeral
    assert int(pic["id"]) not in h.fd.cdn_requests  # refused before anything was downloaded
    assert len(await h.jobs()) == jobs_before and len(await h.ledger()) == ledger_before


async def test_on_postgresql_the_end_picture_reaches_the_worker_through_the_database(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    harness = BotHarness(tmp_path_factory.mktemp("e2e-keyframes-pg"), worker=True, db="postgresql")
    async with shared_harness(harness) as pg:
        last = picture(90, 160, (20, 40, 230))  # portrait: the ratio follows the end picture
        interaction = await pg.slash(
            pg.member_id, "video", prompt="dusk", end_image=pg.fd.attachment("e.png", last)
        )
        job_id, _ = await queued_job_id(pg, interaction)
        assert await stored_inputs(pg, job_id) == {"end_image": prepare(last).png}
        _, job, frames = await posted_video(pg, job_id)
        w, hh = job.params["width"], job.params["height"]
        assert ratio_of(w, hh) == "9:16"
        end_fitted = fit(open_png(prepare(last).png), w, hh)
        assert logged_digest(pg, job_id, "last") == pixel_digest(end_fitted)
        assert mean_diff(frames[-1], np.asarray(end_fitted)) < 6
        assert await charges(pg, job_id) == [("charge", -1)]


def ratio_of(width: int, height: int) -> str:
    return {v: k for k, v in PRESETS["tiny"].sizes.items()}[(width, height)]
