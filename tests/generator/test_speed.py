"""Speed options reach the tiny Wan model; an option the family cannot use stops start-up naming the setting."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.speed import SpeedOptionError, SpeedOptions, apply_speed_options, reset_step_cache, warm_up
from videobot.settings import Settings


@pytest.fixture(scope="module")
def tiny_wan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Wan model (two blocks: enough for FirstBlockCache's leader and a follower)."""
    from generator.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("speed") / "tiny-wan", "wan")


def load(model_dir: Path):  # type: ignore[no-untyped-def]
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(model_dir), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, *, height: int = 32, width: int = 48, steps: int = 4, on_step=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    return pipe(
        "a cat surfing a wave",
        num_frames=9,
        height=height,
        width=width,
        num_inference_steps=steps,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        callback_on_step_end=on_step,
    ).frames[0]


def hooks_on(module: torch.nn.Module) -> set[str]:
    names: set[str] = set()
    for sub in module.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        if registry is not None:
            names |= set(registry.hooks)
    return names


def test_settings_build_the_options_with_safe_defaults() -> None:
    opts = SpeedOptions.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert opts == SpeedOptions(
        attention_backend="native", step_cache="off", compile="off", vae_slicing=False
    )
    assert not opts.needs_warm_up
    env = dict(VIDEOBOT_STEP_CACHE="first_block", VIDEOBOT_COMPILE="regional", VIDEOBOT_VAE_SLICING="true")
    opts = SpeedOptions.from_settings(Settings(_env_file=None, **env))  # type: ignore[arg-type, call-arg]
    assert (opts.step_cache, opts.compile, opts.vae_slicing, opts.needs_warm_up) == (
        "first_block",
        "regional",
        True,
        True,
    )


def test_native_attention_and_vae_slicing_reach_the_model(tiny_wan_dir: Path) -> None:
    from diffusers.models.attention_dispatch import AttentionBackendName

    pipe = load(tiny_wan_dir)
    notes = apply_speed_options(pipe, "wan", SpeedOptions(attention_backend="native", vae_slicing=True))
    backends = {
        m.processor._attention_backend
        for m in pipe.transformer.modules()
        if hasattr(getattr(m, "processor", None), "_attention_backend")
    }
    assert backends == {AttentionBackendName.NATIVE}
    assert pipe.vae.use_slicing
    assert any("native" in n for n in notes) and "VAE slicing" in notes
    assert generate(pipe).shape == (9, 32, 48, 3)


@pytest.mark.parametrize(
    ("cache", "hook"),
    [
        ("first_block", "fbc_leader_block_hook"),
        ("taylorseer", "taylorseer_cache"),
        ("pab", "pyramid_attention_broadcast"),
    ],
)
def test_a_step_cache_registers_its_hooks_on_the_transformer(
    tiny_wan_dir: Path, cache: str, hook: str
) -> None:
    pipe = load(tiny_wan_dir)
    assert not hooks_on(pipe.transformer) - {"cache_context"}
    apply_speed_options(pipe, "wan", SpeedOptions(step_cache=cache))
    assert pipe.transformer.is_cache_enabled and hook in hooks_on(pipe.transformer)
    out = generate(pipe)
    assert out.shape == (9, 32, 48, 3) and np.isfinite(out).all()


def test_a_cancelled_run_leaves_no_cache_state_behind_once_reset(tiny_wan_dir: Path) -> None:
    """A job cancelled mid-run skips diffusers' end-of-call reset: the next job (another size) crashes on the
    first-block cache's stale residual unless ``reset_step_cache`` runs first."""
    pipe = load(tiny_wan_dir)
    apply_speed_options(pipe, "wan", SpeedOptions(step_cache="first_block"))
    reference = generate(pipe)

    class Cancelled(Exception):
        pass

    def cancel_at_step_2(p, i, t, kwargs):  # type: ignore[no-untyped-def]
        if i == 1:
            raise Cancelled()
        return kwargs

    with pytest.raises(Cancelled):
        generate(pipe, height=48, width=64, on_step=cancel_at_step_2)
    with pytest.raises(RuntimeError, match="size of tensor"):
        generate(pipe)
    with pytest.raises(Cancelled):
        generate(pipe, height=48, width=64, on_step=cancel_at_step_2)
    reset_step_cache(pipe)
    np.testing.assert_array_equal(generate(pipe), reference)


@pytest.mark.parametrize(
    ("family", "options", "setting"),
    [
        (
            "ltx2",
            SpeedOptions(step_cache="first_block"),
            "VIDEOBOT_STEP_CACHE=first_block is not supported by the ltx2 family",
        ),
        (
            "ltx2",
            SpeedOptions(step_cache="mag"),
            "VIDEOBOT_STEP_CACHE=mag is not supported by the ltx2 family",
        ),
        ("wan", SpeedOptions(step_cache="mag"), "VIDEOBOT_STEP_CACHE=mag is not supported by the wan family"),
        (
            "cogvideox",
            SpeedOptions(compile="regional"),
            "VIDEOBOT_COMPILE=regional is not supported by the cogvideox family",
        ),
        ("wan", SpeedOptions(attention_backend="flash"), "VIDEOBOT_ATTENTION_BACKEND=flash"),
        ("wan", SpeedOptions(attention_backend="sage"), "VIDEOBOT_ATTENTION_BACKEND=sage"),
    ],
)
def test_an_unsupported_option_stops_start_up_naming_the_setting(
    tiny_wan_dir: Path, family: str, options: SpeedOptions, setting: str
) -> None:
    pipe = load(tiny_wan_dir)
    with pytest.raises(SpeedOptionError) as err:
        apply_speed_options(pipe, family, options)
    assert setting in str(err.value)
    assert isinstance(err.value, ValueError)


def test_auto_attention_falls_back_to_native_without_flash_on_cuda(tiny_wan_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: auto may pick flash")
    notes = apply_speed_options(load(tiny_wan_dir), "wan", SpeedOptions(attention_backend="auto"))
    assert "attention backend auto -> native" in notes


def test_vae_options_on_a_vae_without_them_stop_start_up(tiny_wan_dir: Path) -> None:
    pipe = load(tiny_wan_dir)
    pipe.vae = torch.nn.Identity()  # stands for a family whose VAE decodes only whole
    for options, setting in (
        (SpeedOptions(vae_tiling=True), "VIDEOBOT_VAE_TILING=true"),
        (SpeedOptions(vae_slicing=True), "VIDEOBOT_VAE_SLICING=true"),
    ):
        with pytest.raises(SpeedOptionError, match=f"{setting} is not supported by the wan family"):
            apply_speed_options(pipe, "wan", options)


def test_a_failing_warm_up_names_the_settings() -> None:
    def boom() -> None:
        raise IndexError("list index out of range")

    with pytest.raises(SpeedOptionError, match="VIDEOBOT_STEP_CACHE=pab") as err:
        warm_up(boom, SpeedOptions(step_cache="pab"))
    assert "IndexError" in str(err.value)
    assert warm_up(lambda: None, SpeedOptions(compile="regional")) >= 0


def test_regional_compile_wraps_the_repeated_blocks(tiny_wan_dir: Path) -> None:
    pipe = load(tiny_wan_dir)
    notes = apply_speed_options(pipe, "wan", SpeedOptions(compile="regional"))
    assert "regional compile of WanTransformerBlock" in notes
    compiled = [b for b in pipe.transformer.blocks if getattr(b, "_compiled_call_impl", None) is not None]
    assert len(compiled) == len(pipe.transformer.blocks) == 2
    if not torch.cuda.is_available() and os.environ.get("VIDEOBOT_TEST_CPU_COMPILE") != "1":
        pytest.skip(
            "running the compiled model needs an inductor C++ build: ~2 min on this 2-core CPU (measured once: "
            "works, output within 1.2e-7 of eager). Set VIDEOBOT_TEST_CPU_COMPILE=1 to run it."
        )
    eager = generate(load(tiny_wan_dir), steps=2)
    warm_up(lambda: generate(pipe, steps=2), SpeedOptions(compile="regional"))
    np.testing.assert_allclose(generate(pipe, steps=2), eager, atol=1e-4)


#: What each tiny family refuses. LTX-2: FirstBlockCache is not registered for its blocks, PAB breaks on its
#: audio-video attention. The tiny LTX and CogVideoX have a single block, too few for FirstBlockCache (the real
#: models have dozens, so this one is the tiny model's, not the family's).
REFUSED = {
    ("ltx2", "first_block"): "diffusers has not registered",
    ("ltx2", "pab"): "audio-video attention",
    ("ltx", "first_block"): "too few blocks",
    ("cogvideox", "first_block"): "too few blocks",
}


@pytest.mark.parametrize("family", ["wan", "wan22", "ltx", "ltx2", "cogvideox"])
def test_each_family_runs_with_each_cache_it_accepts_and_refuses_the_others(
    family: str, tmp_path: Path
) -> None:
    import dataclasses

    from generator.pipeline import VideoPipeline
    from videobot.presets import plan

    for cache in ("first_block", "taylorseer", "pab"):
        vp = VideoPipeline.load(f"tiny-{family}", data_dir=tmp_path, device="cpu")
        options = SpeedOptions(step_cache=cache)
        if (family, cache) in REFUSED:
            with pytest.raises(SpeedOptionError, match=REFUSED[family, cache]) as err:
                apply_speed_options(vp.pipe, family, options, pipes=list(vp.pipes.values()))
            assert f"VIDEOBOT_STEP_CACHE={cache} is not supported by" in str(err.value)
            continue
        apply_speed_options(vp.pipe, family, options, pipes=list(vp.pipes.values()))
        params = dataclasses.replace(plan(vp.preset, "a cat surfing a wave", seed=3), num_inference_steps=6)
        out = vp.run(params)  # six steps: past every cache's warm-up steps, so cached steps really run
        assert out.frames.shape == (params.num_frames, params.height, params.width, 3), (family, cache)
