"""Lineage and what the result buttons ask of the core: parameters of remixes and extensions, the
extension limit, the read-only limit check, stored files, deleting a result (real databases)."""

from __future__ import annotations

import itertools

import pytest

from videobot import planning
from videobot.db import Database
from videobot.errors import InvalidParameters, QuotaExceeded, TooManyQueued
from videobot.jobs import JobQueue, QueueConfig, ResultData, SubmitRequest
from videobot.models import Job
from videobot.presets import PRESETS, plan
from videobot.settings import Settings

GUILD = 1000
_keys = itertools.count()


def req(user: int, **kw) -> SubmitRequest:  # type: ignore[no-untyped-def]
    base = dict(
        idempotency_key=f"lineage{next(_keys)}",
        guild_id=GUILD,
        channel_id=2000,
        user_id=user,
        model="tiny",
        params=plan(PRESETS["tiny"], "a fox", seed=7).to_dict(),
    )
    base.update(kw)
    return SubmitRequest(**base)  # type: ignore[arg-type]


def result(data: bytes = b"\x00mp4") -> ResultData:
    return ResultData(video=data, width=64, height=32, num_frames=9, fps=8, duration_s=1.1)


async def delivered(q: JobQueue, request: SubmitRequest, message_id: int, video: bytes = b"\x00mp4") -> Job:
    job = (await q.submit(request)).job
    claim = await q.claim("w")
    assert claim is not None and claim.job_id == job.id
    await q.complete(claim, result(video))
    assert await q.mark_delivered(job.id, message_id)
    fresh = await q.get(job.id)
    assert fresh is not None
    return fresh


def test_remix_keeps_the_options_and_changes_the_text_and_seed() -> None:
    source = plan(PRESETS["tiny"], "a fox", negative_prompt="blur", seed=7, duration_s=2, aspect_ratio="9:16")
    params = planning.remix_params(source.to_dict() | {"image": "db:image", "verb": "image"}, " a wolf ", "")
    assert params["prompt"] == "a wolf" and params["negative_prompt"] == "" and params["seed"] != 7
    for key in ("num_frames", "width", "height", "fps", "verb", "image", "num_inference_steps"):
        assert params[key] == (source.to_dict() | {"image": "db:image", "verb": "image"})[key]
    with pytest.raises(InvalidParameters, match="prompt is empty"):
        planning.remix_params(source.to_dict(), "   ", "")


def test_extend_params_continue_the_clip_at_its_size() -> None:
    settings = Settings(VIDEOBOT_MODEL="tiny")  # type: ignore[call-arg]
    target = planning.queue_target(settings)
    source = plan(PRESETS["tiny"], "a fox", seed=7, aspect_ratio="9:16", num_videos=2).to_dict()
    params = planning.extend_params(target, source, "the fox jumps")
    assert params["verb"] == "extend" and params["source_video"] == planning.SOURCE_VIDEO_REF
    assert params["num_frames"] == PRESETS["tiny"].extend_window
    assert (params["width"], params["height"]) == (source["width"], source["height"])
    assert params["prompt"] == "the fox jumps" and params["seed"] != 7 and params["num_videos"] == 1
    # ``auto``: a bare request the worker plans for its own preset.
    bare = {"prompt": "a fox", "negative_prompt": "", "seed": 3, "duration_s": None, "aspect_ratio": None}
    auto = planning.extend_params(planning.QueueTarget("auto", None), bare, "next")
    assert auto["verb"] == "extend" and auto["source_video"] == "db:video" and auto["prompt"] == "next"


def test_max_extensions_setting_overrides_the_preset() -> None:
    assert planning.max_extensions(Settings(VIDEOBOT_MODEL="tiny")) == PRESETS["tiny"].max_extensions == 4  # type: ignore[call-arg]
    assert planning.max_extensions(Settings(VIDEOBOT_MODEL="tiny", VIDEOBOT_MAX_EXTENSIONS="1")) == 1  # type: ignore[call-arg]
    assert planning.max_extensions(Settings(VIDEOBOT_MODEL="auto", VIDEOBOT_MAX_EXTENSIONS="")) == 4  # type: ignore[call-arg]


async def test_lineage_counts_extensions_and_stops_at_the_origin(db: Database) -> None:
    q = JobQueue(db, QueueConfig(max_queued_per_user=10, default_limit=10))
    root = await delivered(q, req(1), 501)
    ext = plan(PRESETS["tiny"], "next", verb="extend", source_video="db:video").to_dict()
    e1 = await delivered(
        q, req(2, kind="extend", parent_job_id=root.id, params=ext, inputs={"video": b"v"}), 502
    )
    e2 = await delivered(
        q, req(1, kind="extend", parent_job_id=e1.id, params=ext, inputs={"video": b"v"}), 503
    )
    chain = await q.lineage(e2.id)
    assert [j.id for j in chain] == [e2.id, e1.id, root.id]
    assert planning.extension_number(chain) == 2
    assert planning.extension_number(await q.lineage(root.id)) == 0
    # A rerun of an extension is an extension too (it cannot be used to get past the limit).
    rerun = await delivered(
        q, req(3, kind="rerun", parent_job_id=e2.id, params=ext, inputs={"video": b"v"}), 504
    )
    assert planning.extension_number(await q.lineage(rerun.id)) == 3
    assert await q.lineage(999_999) == []


async def test_check_limits_answers_like_submit_without_writing(db: Database) -> None:
    q = JobQueue(db, QueueConfig(max_queued_per_user=1, default_limit=1))
    await q.check_limits(GUILD, 7)
    await q.submit(req(7))
    with pytest.raises(TooManyQueued):
        await q.check_limits(GUILD, 7)
    q.config.max_queued_per_user = 5
    with pytest.raises(QuotaExceeded, match="video credit"):
        await q.check_limits(GUILD, 7)
    assert len(await q.user_jobs(GUILD, 7)) == 1


async def test_stored_files_and_forgetting_a_deleted_result(db: Database) -> None:
    q = JobQueue(db, QueueConfig(max_queued_per_user=10, default_limit=10))
    job = await delivered(q, req(1, inputs={"image": b"png"}), 601)
    assert await q.stored_files(job.id) == {"result", "image"}
    assert await q.by_result_message(601) is not None
    await q.forget_result(job.id)
    assert await q.stored_files(job.id) == frozenset()
    fresh = await q.get(job.id)
    assert fresh is not None and fresh.result_message_id is None and fresh.status == "delivered"
    assert await q.by_result_message(601) is None
