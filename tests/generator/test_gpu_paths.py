"""Defects of the GPU code paths that a CPU and the tiny models can show (issue 20, item 1): attention backends
per family and judged on the device the model runs on, regional compile with fp8 storage or group offload,
image-only warm-up, model offload re-armed after a ``from_pipe`` pipeline, the LTX distilled schedule, a
step cache that follows a stale timestep, LTX-2's VAE tiling. (Wan's float32 VAE: test_families.py.)"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import generator.speed as speed
from generator.pipeline import ModelLoadError, VideoPipeline
from generator.speed import SpeedOptionError, SpeedOptions, apply_speed_options, choose_attention_backend
from videobot.presets import LTX_DISTILLED_TIMESTEPS, PRESETS, plan


class Cancelled(Exception):
    pass


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gpu-paths")


def load(name: str, data_dir: Path, **kw: Any) -> VideoPipeline:
    return VideoPipeline.load(name, data_dir=data_dir, device="cpu", **kw)


def picture(width: int = 64, height: int = 32) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([x * 4 % 256, y * 8 % 256, (x + y) % 256], -1).astype(np.uint8))


@pytest.fixture
def cpu_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regional compile traced by dynamo as on a GPU, but run eagerly: a CPU inductor build takes ~2 min on this
    machine. ``VIDEOBOT_TEST_CPU_COMPILE=1`` keeps the real inductor backend."""
    torch._dynamo.reset()
    if os.environ.get("VIDEOBOT_TEST_CPU_COMPILE") != "1":
        monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    yield
    torch._dynamo.reset()


# --- attention -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("installed", [True, False], ids=["installed", "missing"])
@pytest.mark.parametrize("backend", ["flash", "sage"])
@pytest.mark.parametrize("name", ["tiny-ltx", "tiny-ltx2", "tiny-cogvideox"])
def test_flash_or_sage_with_a_masked_or_ignoring_family_stops_start_up(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, name: str, backend: str, installed: bool
) -> None:
    """LTX and LTX-2 pass the prompt mask that diffusers' flash and sage refuse in every job; CogVideoX's
    processor would ignore the setting. Refused at start, whether or not the package is there."""
    monkeypatch.setattr(speed, "_installed_backend", lambda _name: installed)
    family = PRESETS[name].family
    with pytest.raises(ModelLoadError) as err:
        load(name, data_dir, speed=SpeedOptions(attention_backend=backend))
    text = str(err.value)
    assert f"VIDEOBOT_ATTENTION_BACKEND={backend}" in text and f"the {family} family" in text
    assert "VIDEOBOT_ATTENTION_BACKEND=native" in text  # what to do


def test_auto_never_picks_flash_for_those_families_but_does_for_wan() -> None:
    cuda, bf16 = torch.device("cuda"), torch.bfloat16
    for family in ("ltx", "ltx2", "cogvideox"):
        assert choose_attention_backend(family, "auto", cuda, bf16, installed=lambda _n: True) == "native"
    assert choose_attention_backend("wan", "auto", cuda, bf16, installed=lambda _n: True) == "flash"
    assert choose_attention_backend("wan", "auto", cuda, bf16, installed=lambda _n: False) == "native"
    assert choose_attention_backend("wan", "auto", "cpu", bf16, installed=lambda _n: True) == "native"


@pytest.mark.parametrize("backend", ["flash", "auto"])
def test_the_attention_check_judges_the_device_the_model_runs_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, backend: str
) -> None:
    """Under offload the weights sit on the CPU, under fp8 storage in float8, while the model runs on CUDA in
    bfloat16: flash is accepted (``auto`` picks it), not refused as "on cpu"."""
    from diffusers import DiffusionPipeline

    from generator.tiny import build_tiny_model

    monkeypatch.setattr(speed, "_installed_backend", lambda _name: True)
    source = build_tiny_model(tmp_path / "tiny-wan", "wan")
    pipe = DiffusionPipeline.from_pretrained(str(source), dtype=torch.float32)
    pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    chosen: list[str] = []
    monkeypatch.setattr(pipe.transformer, "set_attention_backend", chosen.append)
    assert pipe.transformer.device.type == "cpu"
    with pytest.raises(SpeedOptionError, match="it runs on cpu"):  # judged where the weights are: refused
        apply_speed_options(pipe, "wan", SpeedOptions(attention_backend="flash"))
    notes = apply_speed_options(
        pipe,
        "wan",
        SpeedOptions(attention_backend=backend),
        device=torch.device("cuda"),
        dtype=torch.bfloat16,
    )
    assert chosen == ["flash"] and "attention: flash" in notes


# --- regional compile --------------------------------------------------------------------------------------------


def test_regional_compile_with_fp8_storage_starts_and_renders(data_dir: Path, cpu_compile: None) -> None:
    params = plan(PRESETS["tiny-wan"], "a cat surfing", seed=3)
    plain = load("tiny-wan", data_dir, layerwise_fp8=True).run(params).frames
    compiled = load("tiny-wan", data_dir, layerwise_fp8=True, speed=SpeedOptions(compile="regional"))
    out = compiled.run(params).frames
    assert out.shape == plain.shape
    assert np.abs(out.astype(int) - plain.astype(int)).max() <= 2  # the same video


def test_regional_compile_with_group_offload_starts_and_renders(data_dir: Path, cpu_compile: None) -> None:
    """Group offload (onloaded to the CPU here: the hooks and their compiler-disabled calls are the same)."""
    vp = load("tiny-wan", data_dir)
    params = plan(PRESETS["tiny-wan"], "a cat surfing", seed=3)
    plain = vp.run(params).frames
    vp.pipe.enable_group_offload(onload_device=torch.device("cpu"), offload_type="leaf_level")
    apply_speed_options(vp.pipe, "wan", SpeedOptions(compile="regional"))
    out = speed.warm_up(lambda: vp.run(params), SpeedOptions(compile="regional"))
    assert out >= 0
    again = vp.run(params).frames
    assert np.abs(again.astype(int) - plain.astype(int)).max() <= 2


def test_a_failed_warm_up_names_the_memory_settings_too() -> None:
    def boom() -> None:
        raise RuntimeError("Attempted to use `torch.nn.Parameter()` constructor")

    with pytest.raises(SpeedOptionError) as err:
        speed.warm_up(
            boom, SpeedOptions(compile="regional"), memory=["VIDEOBOT_OFFLOAD=group", "VIDEOBOT_FP8=true"]
        )
    assert "VIDEOBOT_COMPILE=regional" in str(err.value)
    assert "VIDEOBOT_OFFLOAD=group" in str(err.value) and "VIDEOBOT_FP8=true" in str(err.value)


# --- warm-up, offload, schedule, step cache --------------------------------------------------------------------


def test_an_image_only_model_warms_up_with_a_picture(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image-only preset (like cogvideox-5b-i2v) with a step cache: the warm-up plans an image job, so it
    needs a picture to start from."""
    image_only = dataclasses.replace(
        PRESETS["tiny-wan22"], verbs=frozenset({"image"}), pipelines={"image": "WanImageToVideoPipeline"}
    )
    monkeypatch.setitem(PRESETS, "tiny-wan22", image_only)
    vp = load("tiny-wan22", data_dir, speed=SpeedOptions(step_cache="first_block"))
    assert vp.verbs == {"image"}
    params = plan(vp.preset, "a cat", seed=1)
    assert vp.run(params, image=picture()).frames.shape[0] == params.num_frames


def test_model_offload_is_re_armed_after_a_from_pipe_run_and_a_stopped_run(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offload hooks belong to the loaded pipeline; the image pipeline (``from_pipe``) never frees them at
    the end of its call, and a cancelled run skips it. (Real model offload needs an accelerator: the hook call
    is what is observed here.)"""
    vp = load("tiny-wan22", data_dir)
    assert vp.pipes["image"] is not vp.pipe
    vp.offload = "model"
    freed: list[str] = []
    monkeypatch.setattr(vp.pipe, "maybe_free_model_hooks", lambda: freed.append("free"))
    text = plan(vp.preset, "a cat", seed=1)
    vp.run(text)
    assert freed == ["free"]  # diffusers' own, at the end of the loaded pipeline's call
    freed.clear()
    vp.run(plan(vp.preset, "a cat", seed=1, verb="image"), image=picture())
    assert freed == ["free"]
    freed.clear()

    def cancel(_step: int, _total: int) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        vp.run(text, on_step=cancel)
    assert freed == ["free"]
    freed.clear()
    vp.offload = "none"
    vp.run(plan(vp.preset, "a cat", seed=1, verb="image"), image=picture())
    assert freed == []


def test_the_distilled_ltx_schedule_reaches_the_pipeline(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    distilled = PRESETS["ltx-video-0.9.8-distilled"]
    assert distilled.steps == len(LTX_DISTILLED_TIMESTEPS) == 8
    assert list(distilled.extra_call_kwargs["timesteps"]) == list(LTX_DISTILLED_TIMESTEPS)
    assert (
        PRESETS["ltx-video-distilled"].extra_call_kwargs["timesteps"]
        == distilled.extra_call_kwargs["timesteps"]
    )
    vp = load("tiny", data_dir)
    # The tiny LTX condition model with the distilled preset's call settings and step count.
    vp.preset = dataclasses.replace(
        vp.preset, steps=distilled.steps, extra_call_kwargs=distilled.extra_call_kwargs
    )
    params = plan(vp.preset, "a cat", seed=1)
    seen: list[list[float]] = []
    scheduler = vp.pipes["text"].scheduler
    set_timesteps = scheduler.set_timesteps

    @functools.wraps(set_timesteps)  # diffusers reads its signature to see that it takes timesteps
    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append([float(t) for t in kwargs.get("timesteps") or []])
        return set_timesteps(*args, **kwargs)

    monkeypatch.setattr(scheduler, "set_timesteps", spy)
    steps: list[int] = []
    with caplog.at_level(logging.WARNING):
        vp.run(params, on_step=lambda k, n: steps.append(n))
    assert seen == [pytest.approx(list(LTX_DISTILLED_TIMESTEPS))]
    assert scheduler.timesteps.tolist() == pytest.approx(list(LTX_DISTILLED_TIMESTEPS))
    assert steps == [8] * 8
    assert not [r for r in caplog.records if "without `sigmas`" in r.getMessage()]


def test_a_step_cache_does_not_follow_a_cancelled_runs_timestep(data_dir: Path) -> None:
    """PAB follows whichever verb pipeline has a current timestep: a text run cancelled mid-way left its own
    behind, and the next image run then skipped attention by the dead run's step, not its own."""
    vp = load("tiny-wan22", data_dir / "pab", speed=SpeedOptions(step_cache="pab"))
    image = dataclasses.replace(plan(vp.preset, "a cat", seed=5, verb="image"), num_inference_steps=6)
    fresh = vp.run(image, image=picture()).frames
    text = dataclasses.replace(plan(vp.preset, "a dog", seed=2), num_inference_steps=6)

    def cancel_after_the_first_step(step: int, _total: int) -> None:
        if step == 1:
            raise Cancelled

    with pytest.raises(Cancelled):
        vp.run(text, on_step=cancel_after_the_first_step)
    np.testing.assert_array_equal(vp.run(image, image=picture()).frames, fresh)


def test_the_ltx2_family_decodes_in_tiles(data_dir: Path) -> None:
    vp = load("tiny-ltx2", data_dir)
    assert vp.pipe.vae.use_tiling
    assert PRESETS["ltx-2"].memory_options["vae_tiling"]
    params = plan(vp.preset, "a cat", seed=1)
    assert vp.run(params).frames.shape[0] == params.num_frames


def test_the_torch_floor_has_what_the_code_and_diffusers_use() -> None:
    """``torch.OutOfMemoryError`` (generator/pipeline.py) came in torch 2.5, ``torch.accelerator`` (diffusers'
    multi-GPU path) in 2.6: an install that pyproject allows must have both."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    [torch_req] = [r for r in map(Requirement, project["project"]["dependencies"]) if r.name == "torch"]
    floors = [Version(s.version) for s in torch_req.specifier if s.operator == ">="]
    assert floors and min(floors) >= Version("2.6"), torch_req
    assert hasattr(torch, "OutOfMemoryError") and hasattr(torch, "accelerator")
