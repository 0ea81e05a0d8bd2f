"""End frame and loop through the real worker on the tiny model and a real SQLite queue: the end picture
comes from the job's stored inputs, is safety-checked like a first picture, and the stored video ends on
it; a loop's progress counts both of its passes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from generator.encode import probe_mp4
from generator.inputs import db_ref
from generator.safety import SafetyClassifier
from generator.worker import Worker
from tests.generator import test_worker
from tests.generator.test_worker import refunds, run_until, settings_for
from videobot.images import fit
from videobot.jobs import JobQueue, QueueConfig, SubmitRequest
from videobot.presets import PRESETS, plan
from videobot.safety import UNSAFE_INPUT

TINY = PRESETS["tiny"]
qdb = test_worker.qdb  # the fixture: a migrated SQLite file and a data dir holding the tiny model


def blue_png(width: int = 70, height: int = 40) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([np.full_like(x, 20), (x * 80 // width) + 20, np.full_like(x, 220)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


async def submit(q: JobQueue, key: str, **kw) -> int:  # type: ignore[no-untyped-def]
    inputs = {"end_image": blue_png()} if kw.get("end_image") else {}
    params = plan(TINY, "a fox running through snow", seed=7, aspect_ratio="16:9", **kw)
    sub = await q.submit(
        SubmitRequest(
            idempotency_key=key,
            guild_id=1,
            channel_id=2,
            user_id=1,
            model="tiny",
            params=params.to_dict(),
            inputs=inputs,
            cost=1,
        )
    )
    return sub.job.id


async def test_an_end_picture_is_checked_read_from_the_database_and_ends_the_video(
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
        # Flagged: the job fails before anything is rendered, refunded once, as for a first picture.
        unsafe = SafetyClassifier.load("tiny-unsafe", data_dir=data)
        bad = await submit(q, "bad-end", end_image=db_ref("end_image"))
        worker = Worker(
            settings_for(data, db.url), q, tiny_pipeline, worker_id="w1", models=["tiny"], safety=unsafe
        )
        assert await run_until(worker, q, bad, {"succeeded", "failed"}) == "failed"
        job = await q.get(bad)
        assert job is not None and job.error_code == "unsafe_input" and job.error_message == UNSAFE_INPUT
        assert rendered == [] and await refunds(db, bad) == 1

        # Safe: a text job whose stored end picture the worker fetched (a text job has inputs too).
        safe = SafetyClassifier.load("tiny-safe", data_dir=data)
        ok = await submit(q, "good-end", end_image=db_ref("end_image"))
        worker = Worker(
            settings_for(data, db.url), q, tiny_pipeline, worker_id="w2", models=["tiny"], safety=safe
        )
        assert await run_until(worker, q, ok, {"succeeded", "failed"}) == "succeeded"
        [result] = await q.get_results(ok)
        frames = probe_mp4(bytes(result.video), decode=True)["frames"]
        w, h = TINY.sizes["16:9"]
        end = np.asarray(fit(Image.open(io.BytesIO(blue_png())).convert("RGB"), w, h)).astype(np.int16)
        assert np.abs(frames[-1].astype(np.int16) - end).mean() < 6
        assert np.abs(frames[0].astype(np.int16) - end).mean() > 30
        assert await refunds(db, ok) == 0
    finally:
        del tiny_pipeline.run  # back to the class's method


async def test_a_loop_without_a_picture_counts_both_passes_in_its_progress(qdb, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q, "loop", loop=True)
    worker = Worker(settings_for(data, db.url), q, tiny_pipeline, worker_id="w3", models=["tiny"])
    assert await run_until(worker, q, job_id, {"succeeded", "failed"}) == "succeeded"
    job = await q.get(job_id)
    assert job is not None and job.progress_total == 2 * TINY.steps and job.progress_step == 2 * TINY.steps
    [result] = await q.get_results(job_id)
    frames = probe_mp4(bytes(result.video), decode=True)["frames"]
    assert np.abs(frames[0].astype(np.int16) - frames[-1].astype(np.int16)).mean() < 8
