"""The worker records each job's seconds per step and peak GPU memory, /metrics shows them, and a run that
returns sound gets it in the posted mp4."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from generator.encode import probe_mp4
from generator.worker import Worker
from tests.generator.test_worker import run_until, settings_for, submit
from videobot.db import Database
from videobot.health import HealthServer
from videobot.jobs import JobQueue, QueueConfig
from videobot.migrate import upgrade


@pytest.fixture
async def qdb(tmp_path: Path, tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    shutil.copytree(tiny_model_dir, data / "models" / "tiny")
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    db = Database(url)
    yield db, data
    await db.dispose()


async def test_seconds_per_step_reaches_the_log_the_job_row_and_metrics(qdb, tiny_pipeline, caplog) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    delay = 0.3  # every step sleeps this long in the step callback, so a step takes at least that
    s = settings_for(data, db.url, VIDEOBOT_TEST_STEP_DELAY=delay)
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q, steps=4)
    worker = Worker(s, q, tiny_pipeline, worker_id="w1", models=["tiny"])
    with caplog.at_level(logging.INFO, logger="generator.worker"):
        assert await run_until(worker, q, job_id, {"succeeded", "failed"}) == "succeeded"
    job = await q.get(job_id)
    assert job is not None and job.seconds_per_step is not None
    assert delay <= job.seconds_per_step < delay + 2.0
    assert job.generation_seconds is not None and job.generation_seconds >= 3 * delay
    assert job.peak_gpu_bytes is None  # no GPU here: nothing measured, nothing made up
    line = next(r.getMessage() for r in caplog.records if f"job {job_id} done in" in r.getMessage())
    assert f"{job.seconds_per_step:.3f} s/step over 4 steps" in line and "peak GPU memory n/a" in line

    server = HealthServer(db, discord_problem=lambda: None)
    port = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
            lines = set((await r.text()).splitlines())
    finally:
        await server.stop()
    assert f'videobot_last_job_seconds_per_step{{model="tiny"}} {job.seconds_per_step}' in lines
    assert "videobot_step_seconds_count 1.0" in lines
    assert 'videobot_step_seconds_bucket{le="0.25"} 0.0' in lines
    assert 'videobot_step_seconds_bucket{le="+Inf"} 1.0' in lines


async def test_a_run_with_sound_is_posted_with_sound(qdb, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    s = settings_for(data, db.url)
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q)
    real_run = tiny_pipeline.run
    sr = 24_000

    def run_with_sound(params, on_step=None, **inputs):  # type: ignore[no-untyped-def]
        out = real_run(params, on_step, **inputs)
        t = np.arange(int(len(out.frames) / params.fps * sr)) / sr
        wave = (0.5 * np.stack([np.sin(2 * np.pi * 440 * t)] * 2)).astype(np.float32)
        return dataclasses.replace(out, audio=wave, audio_sample_rate=sr)

    tiny_pipeline.run = run_with_sound
    try:
        worker = Worker(s, q, tiny_pipeline, worker_id="w1", models=["tiny"])
        assert await run_until(worker, q, job_id, {"succeeded", "failed"}) == "succeeded"
    finally:
        tiny_pipeline.run = real_run
    result = await q.get_result(job_id)
    assert result is not None
    info = probe_mp4(result.video)
    assert info["faststart"] and info["codec"] == "h264"
    assert info["audio"] is not None and (info["audio"]["codec"], info["audio"]["sample_rate"]) == ("aac", sr)
    assert abs(info["audio"]["duration_s"] - info["video_duration_s"]) <= 1 / (info["fps"] or 1)
