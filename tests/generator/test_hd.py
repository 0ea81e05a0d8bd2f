"""HD videos (``generator.hd``): the source's video made again, its latents upsampled 2x and refined, on
the tiny LTX-Video and LTX-2 models with their tiny upsamplers; the presets checked against diffusers."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import diffusers
import numpy as np
import pytest
import torch
from diffusers.pipelines.ltx2.utils import STAGE_2_DISTILLED_SIGMA_VALUES
from PIL import Image

from generator.pipeline import VideoPipeline
from videobot.errors import InvalidParameters
from videobot.planning import hd_params
from videobot.presets import LTX2_STAGE_2_SIGMAS, PRESETS, GenerationParams, offered_verbs, plan, run_steps


def test_hd_presets_match_diffusers() -> None:
    assert list(LTX2_STAGE_2_SIGMAS) == STAGE_2_DISTILLED_SIGMA_VALUES
    with_hd = {name for name, p in PRESETS.items() if "hd" in p.verbs}
    assert with_hd == {
        "ltx-video-distilled",
        "ltx-video-0.9.8-distilled",
        "ltx-2.3-distilled",
        "tiny",
        "tiny-ltx",
        "tiny-ltx2",
    }
    for name in with_hd:
        preset = PRESETS[name]
        assert preset.upsampler and preset.hd_refine_steps > 0, name
        upsample = (
            diffusers.LTX2LatentUpsamplePipeline
            if preset.family == "ltx2"
            else diffusers.LTXLatentUpsamplePipeline
        )
        assert set(preset.hd_upsample) <= set(inspect.signature(upsample.__call__).parameters), name
        # The refine runs on the pipeline that made the source (latents in, refine schedule).
        refine = getattr(diffusers, preset.pipeline_for("text"))
        call = set(inspect.signature(refine.__call__).parameters)
        assert {"latents", *preset.hd_refine} <= call, name
    # The tiny models refine exactly as their real families do.
    assert PRESETS["tiny-ltx"].hd_refine == PRESETS["ltx-video-distilled"].hd_refine
    assert PRESETS["tiny-ltx2"].hd_refine == PRESETS["ltx-2.3-distilled"].hd_refine
    # `auto` may stream the model on a 12 GB card: it does not offer HD.
    assert "hd" not in offered_verbs("auto")


@pytest.fixture(scope="module", params=["tiny-ltx", "tiny-ltx2"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> VideoPipeline:
    return VideoPipeline.load(request.param, data_dir=tmp_path_factory.mktemp("hd"), device="cpu")


def _hd(params: GenerationParams) -> GenerationParams:
    return GenerationParams.from_dict(hd_params(params.to_dict()))


def test_hd_video_is_the_source_at_twice_the_size(tiny: VideoPipeline) -> None:
    source = plan(tiny.preset, "a red fox running through fresh snow", seed=11)
    # Every transformer input of the source's run, then of the HD run.
    seen: list[torch.Tensor] = []
    handle = tiny.pipe.transformer.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(kwargs.get("hidden_states", args[0] if args else None).clone()),
        with_kwargs=True,
    )
    steps: list[tuple[int, int]] = []
    try:
        made = tiny.run(source)
        n = len(seen)
        hd = _hd(source)
        out = tiny.run(hd, lambda k, total: steps.append((k, total)))
    finally:
        handle.remove()
    assert (hd.width, hd.height) == (2 * source.width, 2 * source.height)
    assert out.frames.shape == (source.num_frames, 2 * source.height, 2 * source.width, 3)
    assert out.frames.dtype == np.uint8 and made.frames.shape[1:3] == (source.height, source.width)
    # The first stage is the source's own run, step for step: the very latents it was decoded from.
    assert len(seen) > n
    for a, b in zip(seen[:n], seen[n : 2 * n], strict=True):
        assert torch.equal(a, b)
    # Then the refine at twice the size: four times the latent tokens per pass.
    assert seen[2 * n].shape[1] == 4 * seen[0].shape[1]
    total = run_steps(tiny.preset, hd)
    assert total == source.num_inference_steps + tiny.preset.hd_refine_steps
    assert steps == [(k, total) for k in range(1, total + 1)]
    if tiny.preset.family == "ltx2":  # the soundtrack is refined with it, as long as the source's
        assert out.audio is not None and made.audio is not None and out.audio.shape == made.audio.shape
    # Same seed, same request: the same HD video every time; the upsampler was loaded once and kept.
    upsample = tiny.upsampler()
    assert np.array_equal(tiny.run(hd).frames, out.frames)
    assert tiny.upsampler() is upsample


def test_hd_of_a_video_from_a_picture_keeps_the_picture(tiny: VideoPipeline) -> None:
    rng = np.random.default_rng(3)
    picture = Image.fromarray(rng.integers(0, 255, (40, 70, 3), dtype=np.uint8))
    source = plan(tiny.preset, "the picture comes alive", seed=5, verb="image", image="db:image")
    made = tiny.run(source, image=picture)
    out = tiny.run(_hd(source), image=picture)
    assert out.frames.shape == (source.num_frames, 2 * source.height, 2 * source.width, 3)
    # The first stage started from exactly the source's first frame.
    assert out.conditioning_digest == made.conditioning_digest is not None


def test_hd_is_refused_where_it_cannot_be_made(tiny: VideoPipeline, tmp_path: Path) -> None:
    source = plan(tiny.preset, "waves", seed=1)
    with pytest.raises(InvalidParameters, match="twice its source"):
        tiny.check_inputs(dataclasses.replace(source, hd=True))  # not doubled
    extension = plan(tiny.preset, "waves", seed=1, verb="extend", source_video="db:video")
    with pytest.raises(InvalidParameters, match="extended clip"):
        tiny.check_inputs(_hd(extension))
    wan = VideoPipeline.load("tiny-wan", data_dir=tmp_path, device="cpu")
    with pytest.raises(InvalidParameters, match="cannot make HD videos"):
        wan.check_inputs(_hd(plan(wan.preset, "waves", seed=1)))


def test_a_missing_upsampler_fails_the_job_with_a_reason(tmp_path: Path) -> None:
    pipeline = VideoPipeline.load(
        "tiny-ltx", data_dir=tmp_path, device="cpu", hd_upsampler=str(tmp_path / "no-such-upsampler")
    )
    with pytest.raises(InvalidParameters, match="HD upsampler .* could not be loaded"):
        pipeline.run(_hd(plan(pipeline.preset, "waves", seed=1)))
