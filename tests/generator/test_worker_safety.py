"""The safety check through the real worker (tiny model, real SQLite file): every stored result carries its
verdict (tiny-unsafe: 1.0, tiny-safe: 0.0; every variation; an extension's new frames), a flagged input
picture fails the job before rendering (refunded once, the reason stored), and the worker process loads
the classifier at start (``off`` warns; one it cannot load stops it with the reason)."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.encode import encode_mp4
from generator.inputs import db_ref
from generator.safety import SafetyClassifier
from generator.worker import Worker
from tests.generator import test_worker
from tests.generator.test_worker import refunds, run_until, settings_for
from tests.ops.test_cli_and_health import videobot
from videobot.jobs import JobQueue, QueueConfig, SubmitRequest
from videobot.presets import PRESETS, plan
from videobot.safety import UNSAFE_INPUT

TINY = PRESETS["tiny"]
qdb = test_worker.qdb  # the fixture: a migrated SQLite file and a data dir holding the tiny model
ROOT = Path(__file__).resolve().parents[2]


def png(width: int = 70, height: int = 40) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def clip(frames: int = 9) -> bytes:
    w, h = TINY.sizes["16:9"]
    y, x = np.mgrid[0:h, 0:w]
    video = np.stack(
        [
            np.stack([(x * 4 + 8 * i) % 256, (y * 6) % 256, np.full_like(x, 40 + 20 * i)], -1)
            for i in range(frames)
        ]
    ).astype(np.uint8)
    return encode_mp4(video, TINY.fps).data


async def submit(q: JobQueue, key: str, verb: str = "text", **kw) -> int:  # type: ignore[no-untyped-def]
    refs: dict[str, str] = {}
    inputs: dict[str, bytes] = {}
    if verb == "image":
        inputs["image"], refs["image"] = png(), db_ref("image")
    elif verb == "extend":
        inputs["video"], refs["source_video"] = clip(), db_ref("video")
    params = plan(TINY, "a fox running through snow", seed=7, verb=verb, aspect_ratio="16:9", **refs, **kw)
    sub = await q.submit(
        SubmitRequest(
            idempotency_key=key,
            guild_id=1,
            channel_id=2,
            user_id=1,
            model="tiny",
            params=params.to_dict(),
            inputs=inputs,
            cost=params.num_videos,
        )
    )
    return sub.job.id


@pytest.mark.parametrize(("name", "score"), [("tiny-unsafe", 1.0), ("tiny-safe", 0.0)])
async def test_every_result_is_stored_with_its_safety_verdict(
    qdb, tiny_pipeline, name: str, score: float
) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    safety = SafetyClassifier.load(name, data_dir=data, device=tiny_pipeline.device)
    scored: list[int] = []
    safety.net.register_forward_pre_hook(lambda _m, args: scored.append(int(args[0].shape[0])))
    one = await submit(q, f"{name}-one")
    two = await submit(q, f"{name}-two", num_videos=2)
    worker = Worker(
        settings_for(data, db.url), q, tiny_pipeline, worker_id="w1", models=["tiny"], safety=safety
    )
    task = asyncio.create_task(worker.run())
    try:
        for job_id in (one, two):
            deadline = time.monotonic() + 120
            while (job := await q.get(job_id)) is not None and job.status not in ("succeeded", "failed"):
                assert time.monotonic() < deadline, f"job {job_id} stuck in {job.status}"
                await asyncio.sleep(0.05)
            assert job is not None and job.status == "succeeded", job.error_message
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    results = [*await q.get_results(one), *await q.get_results(two)]
    assert len(results) == 3  # the single video and both variations
    for r in results:
        assert (r.safety_score, r.safety_model) == (score, name)
        assert r.safety_frame is not None and 0 <= r.safety_frame < r.num_frames
    # Three videos, 8 frames each (9-frame videos), each 2:1 frame in two windows: one batch per video.
    assert scored == [16, 16, 16]


async def test_an_extension_is_scored_on_its_new_frames(qdb, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    safety = SafetyClassifier.load("tiny-unsafe", data_dir=data)
    job_id = await submit(q, "extend", verb="extend")
    worker = Worker(
        settings_for(data, db.url), q, tiny_pipeline, worker_id="w1", models=["tiny"], safety=safety
    )
    assert await run_until(worker, q, job_id, {"succeeded", "failed"}) == "succeeded"
    (result,) = await q.get_results(job_id)
    # Every frame scores 1.0, so the verdict names the first frame scored: the first new one (the
    # source clip's 9 frames come first in the stored video).
    assert result.num_frames > 9 and result.safety_score == 1.0 and result.safety_frame == 9


async def test_a_flagged_input_picture_fails_the_job_before_rendering_and_refunds_once(
    qdb, tiny_pipeline
) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    rendered: list[int] = []
    real_run = tiny_pipeline.run

    def counting_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        rendered.append(1)
        return real_run(*args, **kwargs)

    tiny_pipeline.run = counting_run
    try:
        unsafe = SafetyClassifier.load("tiny-unsafe", data_dir=data)
        job_id = await submit(q, "bad-picture", verb="image")
        worker = Worker(
            settings_for(data, db.url), q, tiny_pipeline, worker_id="w1", models=["tiny"], safety=unsafe
        )
        assert await run_until(worker, q, job_id, {"succeeded", "failed"}) == "failed"
        job = await q.get(job_id)
        assert job is not None and job.error_code == "unsafe_input" and job.error_message == UNSAFE_INPUT
        assert rendered == [] and await q.get_results(job_id) == [] and job.progress_step == 0
        assert await refunds(db, job_id) == 1

        # The same picture with a classifier that finds it safe: rendered and stored as usual.
        safe = SafetyClassifier.load("tiny-safe", data_dir=data)
        ok_id = await submit(q, "good-picture", verb="image")
        worker = Worker(
            settings_for(data, db.url), q, tiny_pipeline, worker_id="w2", models=["tiny"], safety=safe
        )
        assert await run_until(worker, q, ok_id, {"succeeded", "failed"}) == "succeeded"
        assert rendered == [1] and [r.safety_score for r in await q.get_results(ok_id)] == [0.0]
        assert await refunds(db, ok_id) == 0
    finally:
        del tiny_pipeline.run  # back to the class's method


async def test_without_a_classifier_the_result_is_stored_unchecked(qdb, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q, "unchecked")
    worker = Worker(settings_for(data, db.url), q, tiny_pipeline, worker_id="w1", models=["tiny"])
    assert await run_until(worker, q, job_id, {"succeeded", "failed"}) == "succeeded"
    (result,) = await q.get_results(job_id)
    assert (result.safety_score, result.safety_frame, result.safety_model) == (None, None, None)


# ------------------------------------------------------------------ the worker process
def _start_worker(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], Path]:
    import os

    assert videobot(["db", "upgrade"], tmp_path).returncode == 0
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("VIDEOBOT_", "DATABASE_URL", "DISCORD_"))
    }
    clean |= {
        "VIDEOBOT_DATA_DIR": str(tmp_path / "data"),
        "VIDEOBOT_HEALTH_PORT": "0",
        "VIDEOBOT_MODEL": "tiny",
    }
    log = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "videobot.cli", "worker"],
        cwd=tmp_path,
        env=clean | env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, log


def _wait_ready(proc: subprocess.Popen[str], log: Path, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while "ready: model" not in (text := log.read_text()):
        assert proc.poll() is None, text[-3000:]
        assert time.monotonic() < deadline, text[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    return log.read_text()


@pytest.mark.parametrize(
    ("setting", "expect"),
    [
        ("off", "safety check OFF"),
        ("auto", "safety check tiny-safe"),  # beside the tiny video model
        ("tiny-unsafe", "safety check tiny-unsafe"),
    ],
)
def test_the_worker_loads_its_classifier_at_start(setting: str, expect: str, tmp_path: Path) -> None:
    proc, log = _start_worker(tmp_path, VIDEOBOT_SAFETY_MODEL=setting)
    text = _wait_ready(proc, log)
    assert expect in text
    warned = "VIDEOBOT_SAFETY_MODEL=off: videos and input pictures are NOT checked" in text
    assert warned == (setting == "off")


def test_a_classifier_the_worker_cannot_load_stops_it_with_the_reason(tmp_path: Path) -> None:
    assert videobot(["db", "upgrade"], tmp_path).returncode == 0
    res = videobot(
        ["worker"],
        tmp_path,
        VIDEOBOT_MODEL="tiny",
        VIDEOBOT_SAFETY_MODEL="someorg/not-cached",
        HF_HUB_OFFLINE="1",
    )
    assert res.returncode == 3, res.stderr[-2000:]
    assert "cannot load the safety classifier" in res.stderr and "someorg/not-cached" in res.stderr
    assert "VIDEOBOT_SAFETY_MODEL=off" in res.stderr and "Traceback" not in res.stderr


async def test_the_verdict_is_stored_on_both_databases(db, tiny_pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same write on SQLite and PostgreSQL (the ``db`` fixture runs both when PostgreSQL is set)."""
    data = tmp_path / "data"
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q, "both-databases")
    safety = SafetyClassifier.load("tiny-unsafe", data_dir=data)
    worker = Worker(
        settings_for(data, db.url), q, tiny_pipeline, worker_id="w1", models=["tiny"], safety=safety
    )
    assert await run_until(worker, q, job_id, {"succeeded", "failed"}) == "succeeded"
    (result,) = await q.get_results(job_id)
    assert (result.safety_score, result.safety_model) == (1.0, "tiny-unsafe") and result.safety_frame == 0
    # What the bot reads to decide (without the video's bytes): the job's highest score.
    assert await q.safety_score(job_id) == 1.0
    unchecked = await submit(q, "both-databases-unchecked")
    worker = Worker(settings_for(data, db.url), q, tiny_pipeline, worker_id="w2", models=["tiny"])
    assert await run_until(worker, q, unchecked, {"succeeded", "failed"}) == "succeeded"
    assert await q.safety_score(unchecked) is None and await q.safety_score(10**6) is None
