"""The LTX-2.3 distilled preset: checked against diffusers 0.42.1 and run the same way on the tiny LTX-2."""

from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path

import diffusers
import numpy as np
import pytest
from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES

from generator.pipeline import VideoPipeline
from videobot.presets import LTX2_DISTILLED_SIGMAS, PRESETS, plan

REAL = PRESETS["ltx-2.3-distilled"]
TINY = PRESETS["tiny-ltx2"]


def test_the_preset_matches_diffusers() -> None:
    assert list(LTX2_DISTILLED_SIGMAS) == DISTILLED_SIGMA_VALUES
    assert REAL.steps == len(DISTILLED_SIGMA_VALUES) and REAL.guidance == 1.0
    # The distilled checkpoint diffusers' own LTX-2 examples load.
    assert REAL.repo_id in inspect.getsource(sys.modules[diffusers.LTX2HDRPipeline.__module__])
    assert REAL.verbs == {"text", "image", "extend", "audio", "keyframes", "loop", "hd"}
    assert {REAL.pipeline_for(v) for v in ("text", "image", "extend")} == {"LTX2ConditionPipeline"}
    call = inspect.signature(diffusers.LTX2ConditionPipeline.__call__).parameters
    assert set(REAL.extra_call_kwargs) <= set(call)
    assert REAL.memory_options.get("vae_tiling") is True
    # The tiny model runs exactly as the real preset: same pipeline, schedule and guidance settings.
    assert (TINY.pipelines, TINY.extra_call_kwargs, TINY.steps, TINY.guidance) == (
        REAL.pipelines,
        REAL.extra_call_kwargs,
        REAL.steps,
        REAL.guidance,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> VideoPipeline:
    return VideoPipeline.load("tiny-ltx2", data_dir=tmp_path_factory.mktemp("ltx2"), device="cpu")


def test_distilled_run_is_one_transformer_pass_per_step_on_the_distilled_schedule(
    tiny: VideoPipeline,
) -> None:
    batches: list[int] = []
    transformer = tiny.pipe.transformer
    handle = transformer.register_forward_pre_hook(
        lambda _m, args, kwargs: batches.append(
            int((kwargs.get("hidden_states", args[0] if args else None)).shape[0])
        ),
        with_kwargs=True,
    )
    try:
        out = tiny.run(plan(tiny.preset, "thunder over a field", seed=4))
    finally:
        handle.remove()
    # No classifier-free, spatio-temporal or modality guidance: a single unbatched pass per step.
    assert batches == [1] * len(DISTILLED_SIGMA_VALUES)
    sigmas = tiny.pipes["text"].scheduler.sigmas.tolist()
    assert np.allclose(sigmas, [*DISTILLED_SIGMA_VALUES, 0.0], atol=1e-6)
    assert out.audio is not None and out.audio.shape[0] == 2


def test_a_job_of_another_length_uses_the_scheduler_spacing(tiny: VideoPipeline) -> None:
    params = dataclasses.replace(plan(tiny.preset, "thunder", seed=4), num_inference_steps=2)
    _, kwargs, _ = tiny.call_kwargs(params)
    assert "sigmas" not in kwargs and kwargs["num_inference_steps"] == 2
    steps: list[int] = []
    tiny.run(params, lambda k, n: steps.append(k))
    assert steps == [1, 2]


def test_an_extension_keeps_its_soundtrack_in_step_with_the_frames(
    tiny: VideoPipeline, tmp_path: Path
) -> None:
    source = tiny.run(plan(tiny.preset, "rain", seed=1, duration_s=3.0)).frames
    out = tiny.run(plan(tiny.preset, "rain", seed=1, verb="extend", source_video="x"), video=source)
    assert len(out.frames) == len(source) + tiny.preset.extend_frames
    assert out.audio is not None and out.audio_sample_rate
    seconds = len(out.frames) / tiny.preset.fps
    assert abs(out.audio.shape[1] / out.audio_sample_rate - seconds) <= 1 / tiny.preset.fps
    # The new sound is at the end, where the new frames are.
    assert np.abs(out.audio[:, -out.audio_sample_rate // 2 :]).max() > 0
