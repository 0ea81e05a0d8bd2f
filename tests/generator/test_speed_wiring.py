"""The speed settings through the real load path: a worker with a step cache serves a job cancelled mid-run and
then another size; a setting the family cannot honour stops `videobot worker` naming it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from generator.pipeline import ModelLoadError, VideoPipeline
from generator.speed import SpeedOptions
from generator.worker import Worker
from tests.generator.test_worker import qdb, run_until, settings_for  # noqa: F401  (qdb is a fixture)
from videobot.jobs import JobQueue, QueueConfig, SubmitRequest
from videobot.presets import PRESETS, plan

ROOT = Path(__file__).resolve().parents[2]


_n = iter(range(10**6))


async def submit(q: JobQueue, *, steps: int, **params: int) -> int:
    """A tiny-wan job (two transformer blocks: FirstBlockCache needs a leader and a follower)."""
    p = plan(PRESETS["tiny-wan"], "a fox running through snow", seed=7).to_dict() | params
    p["num_inference_steps"] = steps
    req = SubmitRequest(
        idempotency_key=f"w{next(_n)}", guild_id=1, channel_id=2, user_id=1, model="tiny-wan", params=p
    )
    return (await q.submit(req)).job.id


async def test_a_cached_worker_survives_a_cancel_then_serves_another_size(qdb, tiny_data_dir: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    db, data = qdb
    pipeline = VideoPipeline.load(
        "tiny-wan", data_dir=tiny_data_dir, device="cpu", speed=SpeedOptions(step_cache="first_block")
    )
    assert pipeline.pipe.transformer.is_cache_enabled
    s = settings_for(data, db.url, VIDEOBOT_TEST_STEP_DELAY=0.2)
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    first = await submit(q, steps=8, width=64, height=48)
    worker = Worker(s, q, pipeline, worker_id="w1", models=["tiny-wan"])
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(600):
            job = await q.get(first)
            if job is not None and job.status == "running" and job.progress_step >= 2:
                break
            await asyncio.sleep(0.02)
        assert (await q.cancel(first, user_id=1)).state == "requested"
        for _ in range(600):
            if (await q.get(first)).status == "cancelled":  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    assert (await q.get(first)).status == "cancelled"  # type: ignore[union-attr]
    # The cancelled run left the first-block cache mid-way; the next job, another size, must not trip on it.
    second = await submit(q, steps=3)  # 48x32: smaller than the cancelled 64x48
    worker = Worker(settings_for(data, db.url), q, pipeline, worker_id="w1", models=["tiny-wan"])
    assert await run_until(worker, q, second, {"succeeded", "failed"}) == "succeeded"


def test_a_step_cache_the_model_cannot_use_stops_loading_with_the_setting_named(tiny_data_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="VIDEOBOT_STEP_CACHE=mag is not supported by the wan family"):
        VideoPipeline.load(
            "tiny-wan", data_dir=tiny_data_dir, device="cpu", speed=SpeedOptions(step_cache="mag")
        )


def test_worker_refuses_to_start_with_an_unsupported_speed_option(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDEOBOT_", "DATABASE_URL", "DISCORD_"))}
    env |= {"VIDEOBOT_DATA_DIR": str(tmp_path / "data"), "VIDEOBOT_HEALTH_PORT": "0", "HF_HUB_OFFLINE": "1"}
    run = [sys.executable, "-m", "videobot.cli"]
    assert subprocess.run([*run, "db", "upgrade"], cwd=tmp_path, env=env, capture_output=True).returncode == 0
    res = subprocess.run(
        [*run, "worker"],
        cwd=tmp_path,
        env=env | {"VIDEOBOT_MODEL": "tiny", "VIDEOBOT_ATTENTION_BACKEND": "sage"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 3, res.stderr[-2000:]
    # The default tiny model is an LTX one, whose prompt mask sage refuses in every job: said at start.
    assert "VIDEOBOT_ATTENTION_BACKEND=sage does not work with the ltx family" in res.stderr
    assert "Traceback" not in res.stderr
