"""Variations on the tiny model: N seeds in batches up to the preset's cap, one at a time after an OOM,
a variation that cannot be made reported (not the whole job), the worker storing N videos, the CLI's
``--variations`` and ``--extend``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from generator.encode import encode_mp4, probe_mp4
from generator.generate_cli import main
from generator.pipeline import OOM_MESSAGE, run_variations
from generator.worker import Worker
from tests.generator import test_worker
from tests.generator.test_worker import TINY, run_until, settings_for
from videobot.errors import GenerationOOM
from videobot.jobs import JobQueue, QueueConfig, SubmitRequest
from videobot.planning import MESSAGE_UPLOAD_LIMIT, file_budget
from videobot.presets import plan

qdb = test_worker.qdb  # the fixture: a migrated SQLite file and a data dir with the tiny model


def diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


class Flaky:
    """Stands in for the loaded pipeline (as ``ParallelPipeline`` does): batches of more than one video
    run out of GPU memory, and so does the single video of each seed in ``oom_seeds``."""

    def __init__(self, real: Any, oom_seeds: set[int], batch_cap: int | None = None) -> None:
        self.real = real
        self.oom_seeds = oom_seeds
        self.preset = (
            real.preset if batch_cap is None else dataclasses.replace(real.preset, batch_cap=batch_cap)
        )
        self.calls: list[tuple[int, int]] = []

    def check_inputs(self, params: Any) -> None:
        self.real.check_inputs(params)

    def run(self, params: Any, on_step: Any = None, **inputs: Any) -> Any:
        self.calls.append((params.seed, params.num_videos))
        if params.num_videos > 1 or params.seed in self.oom_seeds:
            if on_step is not None:
                on_step(1, params.num_inference_steps)  # it got one step in before running out
            raise GenerationOOM(OOM_MESSAGE)
        return self.real.run(params, on_step, **inputs)


def test_batched_variations_are_the_videos_of_seed_plus_i(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    params = plan(TINY, "a kite over a beach", seed=41, num_videos=3)
    steps: list[tuple[int, int]] = []
    variations = run_variations(tiny_pipeline, params, lambda k, n: steps.append((k, n)))
    assert [(v.index, v.seed, v.error) for v in variations] == [(0, 41, None), (1, 42, None), (2, 43, None)]
    videos = [v.output.frames for v in variations]  # type: ignore[union-attr]
    assert (
        min(diff(a, b) for i, a in enumerate(videos) for b in videos[i + 1 :]) > 20
    )  # three different videos
    alone = tiny_pipeline.run(dataclasses.replace(params, seed=42, num_videos=1)).frames
    assert (
        diff(alone, videos[1]) <= 2
    )  # the same starting noise batched or alone (float sums may round apart)
    assert steps[-1] == (2, 2)  # one batch of three (tiny's cap is 4)


def test_oom_batch_falls_back_to_one_at_a_time_and_reports_the_one_that_failed(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    flaky = Flaky(tiny_pipeline, oom_seeds={101}, batch_cap=2)
    params = plan(TINY, "a kite", seed=100, num_videos=3)
    steps: list[tuple[int, int]] = []
    variations = run_variations(flaky, params, lambda k, n: steps.append((k, n)))
    assert flaky.calls == [(100, 2), (100, 1), (101, 1), (102, 1)]
    assert [v.output is not None for v in variations] == [True, False, True]
    assert variations[1].error == "not enough GPU memory" and variations[1].seed == 101
    assert variations[2].seed == 102
    assert steps[-1][0] == steps[-1][1]  # the count ends full


def test_every_variation_out_of_memory_is_the_job_failing(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    flaky = Flaky(tiny_pipeline, oom_seeds={5, 6})
    with pytest.raises(GenerationOOM, match="GPU memory"):
        run_variations(flaky, plan(TINY, "a kite", seed=5, num_videos=2))


def test_file_budget_shares_the_message_limit() -> None:
    ten = 10 * 1024 * 1024
    assert file_budget(ten, 1) == ten and file_budget(ten, 2) == ten  # 20 MiB in one request fits
    assert 3 * file_budget(ten, 3) < MESSAGE_UPLOAD_LIMIT  # three would not fit at 10 MiB each
    assert 4 * file_budget(50 * 1024 * 1024, 4) < MESSAGE_UPLOAD_LIMIT


async def test_worker_stores_every_variation_of_one_job(qdb, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    params = plan(TINY, "a fox running through snow", seed=9, num_videos=3).to_dict()
    sub = await q.submit(
        SubmitRequest(
            idempotency_key="v3", guild_id=1, channel_id=2, user_id=1, model="tiny", params=params, cost=3,
            upload_limit_bytes=20 * 1024 * 1024,
        )
    )  # fmt: skip
    worker = Worker(settings_for(data, db.url), q, tiny_pipeline, worker_id="w1", models=["tiny"])
    assert await run_until(worker, q, sub.job.id, {"succeeded", "failed"}) == "succeeded"
    results = await q.get_results(sub.job.id)
    assert [r.variant for r in results] == [0, 1, 2]
    frames = [probe_mp4(r.video, decode=True)["frames"] for r in results]
    assert all(probe_mp4(r.video)["codec"] == "h264" for r in results)
    assert min(diff(a, b) for i, a in enumerate(frames) for b in frames[i + 1 :]) > 20
    job = await q.get(sub.job.id)
    assert job is not None and job.error_message is None and job.progress_step == job.progress_total


def test_cli_variations_write_numbered_files(
    tiny_data_dir: Path, tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out.mp4"
    argv = ["a cat surfing", "-o", str(out), "--model", "tiny", "--seed", "7", "--variations", "3",
            "--data-dir", str(tiny_data_dir)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out-1.mp4", "out-2.mp4", "out-3.mp4"]
    for i, seed in enumerate((7, 8, 9), start=1):
        assert f"out-{i}.mp4" in printed and f"seed {seed}" in printed
    frames = [probe_mp4((tmp_path / f"out-{i}.mp4").read_bytes(), decode=True)["frames"] for i in (1, 2, 3)]
    assert min(diff(a, b) for i, a in enumerate(frames) for b in frames[i + 1 :]) > 20
    # The second variation is the video of seed 8 made alone.
    assert main(["a cat surfing", "-o", str(tmp_path / "alone.mp4"), "--model", "tiny", "--seed", "8",
                 "--data-dir", str(tiny_data_dir)]) == 0  # fmt: skip
    assert diff(probe_mp4((tmp_path / "alone.mp4").read_bytes(), decode=True)["frames"], frames[1]) <= 3


@pytest.mark.parametrize("n", ["0", "5"])
def test_cli_variations_out_of_range_is_one_clean_line(
    n: str, tiny_data_dir: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    argv = [
        "a dog",
        "-o",
        str(tmp_path / "x.mp4"),
        "--model",
        "tiny",
        "--variations",
        n,
        "--data-dir",
        str(tiny_data_dir),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "1 to 4" in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_extend_continues_a_clip(
    tiny_data_dir: Path, tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    w, h = TINY.sizes[TINY.default_aspect]
    # A smooth moving gradient (noise would not survive H.264 well enough to compare).
    y, x = np.mgrid[0:h, 0:w]
    clip = np.stack(
        [np.stack([(x * 4 + t * 9) % 256, (y * 6) % 256, np.full_like(x, 90 + t * 5)], -1) for t in range(9)]
    )
    clip = clip.astype(np.uint8)
    src = tmp_path / "clip.mp4"
    src.write_bytes(encode_mp4(clip, TINY.fps).data)
    src_frames = probe_mp4(src.read_bytes(), decode=True)["frames"]
    out = tmp_path / "longer.mp4"
    argv = ["the gradient keeps moving", "-o", str(out), "--model", "tiny", "--seed", "3", "--extend", str(src),
            "--data-dir", str(tiny_data_dir)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    info = probe_mp4(out.read_bytes(), decode=True)
    assert info["codec"] == "h264"
    assert len(info["frames"]) == len(src_frames) + TINY.extend_frames
    # The output starts with the clip (through a second H.264 encode) and then goes on with new frames.
    assert diff(info["frames"][: len(src_frames)], src_frames) <= 24
    assert np.mean(np.abs(info["frames"][:9].astype(int) - src_frames.astype(int))) < 3


class NoisePipeline:
    """Stands in for a real model's output size: each video is 49 frames of 832x480 noise (the size
    worst case for H.264, ~11 MB at the default quality), so fitting them is real work."""

    def __init__(self, real: Any) -> None:
        self.preset = real.preset
        self.real = real

    def check_inputs(self, params: Any) -> None:
        self.real.check_inputs(params)

    def run(self, params: Any, on_step: Any = None, **inputs: Any) -> Any:
        from generator.pipeline import RunOutput

        rng = np.random.default_rng(params.seed)
        videos = tuple(
            rng.integers(0, 256, (49, 480, 832, 3), dtype=np.uint8) for _ in range(params.num_videos)
        )
        if on_step is not None:
            on_step(params.num_inference_steps, params.num_inference_steps)
        return RunOutput(frames=videos[0], variations=videos)


async def test_variations_together_fit_discords_request_limit(qdb, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    """A boosted server allows 50 MiB per file, but one message carries at most 25 MiB: three videos that
    would take ~11 MB each are fitted into a third of it each."""
    db, data = qdb
    q = JobQueue(db, QueueConfig(lease_seconds=30))
    params = plan(TINY, "static on an old TV", seed=1, num_videos=3).to_dict()
    sub = await q.submit(
        SubmitRequest(
            idempotency_key="v-big", guild_id=1, channel_id=2, user_id=1, model="tiny", params=params, cost=3,
            upload_limit_bytes=50 * 1024 * 1024,
        )
    )  # fmt: skip
    worker = Worker(
        settings_for(data, db.url), q, NoisePipeline(tiny_pipeline), worker_id="w1", models=["tiny"]
    )
    assert await run_until(worker, q, sub.job.id, {"succeeded", "failed"}, timeout=240) == "succeeded"
    results = await q.get_results(sub.job.id)
    assert len(results) == 3
    sizes = [r.size_bytes for r in results]
    assert sum(sizes) <= MESSAGE_UPLOAD_LIMIT - 64 * 1024, sizes
    assert max(sizes) > 4 * 1024 * 1024  # fitted to the share, not squeezed to nothing
    assert all(r.encode_notes and "to fit" in r.encode_notes for r in results)  # each was re-encoded to fit
    assert all(probe_mp4(r.video)["codec"] == "h264" for r in results)


def test_each_variation_keeps_its_own_soundtrack(tmp_path: Path) -> None:
    from generator.pipeline import VideoPipeline

    vp = VideoPipeline.load("tiny-ltx2", data_dir=tmp_path, device="cpu")
    params = plan(vp.preset, "rain on a tin roof", seed=2, num_videos=2)
    variations = run_variations(vp, params)
    outs = [v.output for v in variations]
    assert all(o is not None and o.audio is not None and o.audio.shape[0] == 2 for o in outs)
    a, b = (o.audio for o in outs)  # type: ignore[union-attr]
    assert a.shape == b.shape and np.abs(a - b).max() > 1e-3  # two takes, two soundtracks
    alone = vp.run(dataclasses.replace(params, seed=3, num_videos=1))
    assert alone.audio is not None and np.abs(alone.audio - b).max() < 0.05 * np.abs(b).max() + 1e-4
