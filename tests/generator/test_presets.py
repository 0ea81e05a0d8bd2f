import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from videobot.errors import InvalidParameters
from videobot.presets import (
    ASPECT_RATIOS,
    DEFAULT_GPU_PRESET,
    MAX_PROMPT_CHARS,
    PRESETS,
    GenerationParams,
    cost_weight,
    plan,
    resolve_preset,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_import_does_not_pull_in_torch():
    code = "import videobot.presets, sys; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def test_required_presets_exist():
    assert DEFAULT_GPU_PRESET == "ltx-video-0.9.8-distilled"
    names = ("wan2.1-1.3b", "ltx-video", "ltx-video-distilled", "cogvideox-2b", "cogvideox-5b", "tiny")
    names += ("wan2.2-ti2v-5b", "ltx-video-0.9.8-distilled", "cogvideox-5b-i2v", "ltx-2")
    names += ("tiny-wan", "tiny-wan22", "tiny-ltx", "tiny-ltx2", "tiny-cogvideox")
    for name in names:
        assert PRESETS[name].name == name
    assert PRESETS["wan2.1-1.3b"].repo_id == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert not PRESETS["tiny"].needs_gpu
    assert all(p.needs_gpu == (not n.startswith("tiny")) for n, p in PRESETS.items())


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_default_plan_is_valid_for_its_model(name):
    preset = PRESETS[name]
    assert (preset.min_frames - 1) % preset.frame_rule == 0
    assert (preset.max_frames - 1) % preset.frame_rule == 0
    assert preset.default_aspect in preset.sizes and set(preset.sizes) <= set(ASPECT_RATIOS)
    for aspect in preset.sizes:
        params = plan(preset, "a red fox in the snow", aspect_ratio=aspect)
        assert preset.valid_frames(params.num_frames)
        assert params.width % preset.size_multiple == 0 and params.height % preset.size_multiple == 0
        assert (params.fps, params.num_inference_steps, params.guidance_scale) == (
            preset.fps,
            preset.steps,
            preset.guidance,
        )
    if preset.family == "ltx":
        assert preset.size_multiple == 32


def test_aspect_ratio_orientation():
    for preset in PRESETS.values():
        w, h = preset.sizes["16:9"]
        assert w > h
        if "9:16" in preset.sizes:
            w, h = preset.sizes["9:16"]
            assert h > w
        if "1:1" in preset.sizes:
            w, h = preset.sizes["1:1"]
            assert w == h


#: The sizes each model was trained at (model cards): only these are offered, per aspect ratio.
TRAINED_SIZES = {
    "wan2.1-1.3b": {"16:9": (832, 480), "9:16": (480, 832)},  # 480p; no square size
    "wan2.2-ti2v-5b": {"16:9": (1280, 704), "9:16": (704, 1280)},  # 720p; no square size
    "cogvideox-2b": {"16:9": (720, 480)},  # 720x480 only (3:2, offered as the landscape ratio)
    "cogvideox-5b": {"16:9": (720, 480)},
    "cogvideox-5b-i2v": {"16:9": (720, 480)},
}


@pytest.mark.parametrize(("name", "sizes"), TRAINED_SIZES.items())
def test_only_trained_sizes_are_offered(name, sizes):
    preset = PRESETS[name]
    assert preset.sizes == sizes
    for ratio in set(ASPECT_RATIOS) - set(sizes):
        with pytest.raises(InvalidParameters) as err:
            plan(preset, "a red fox", aspect_ratio=ratio)
        assert ", ".join(sizes) in str(err.value)


def test_cogvideox_memory_figures_come_with_the_options_they_were_measured_with():
    """The card's 12.5 / 20.7 GB were measured with model offload and VAE tiling: the presets set both."""
    for name in ("cogvideox-2b", "cogvideox-5b", "cogvideox-5b-i2v"):
        preset = PRESETS[name]
        assert preset.repo_id == f"zai-org/{name.replace('cogvideox', 'CogVideoX').replace('-i2v', '-I2V')}"
        assert preset.memory_options == {"offload": "model", "vae_tiling": True}
        assert "with model offload and VAE tiling" in preset.vram_source
    for preset in PRESETS.values():  # a figure "with offload" comes with an offload option, and back
        if "no offload" in preset.vram_source:
            assert preset.memory_options.get("offload", "none") == "none", preset.name


def test_default_plan_matches_published_settings():
    wan = plan(PRESETS["wan2.1-1.3b"], "x")
    assert (wan.num_frames, wan.width, wan.height, wan.fps, wan.num_inference_steps) == (81, 832, 480, 16, 50)
    assert wan.guidance_scale == 5.0
    cog = plan(PRESETS["cogvideox-5b"], "x")
    assert (cog.num_frames, cog.width, cog.height, cog.fps) == (49, 720, 480, 8)
    distilled = PRESETS["ltx-video-distilled"]
    assert (distilled.steps, distilled.guidance) == (8, 1.0)


@pytest.mark.parametrize(
    ("name", "seconds", "frames"),
    [
        ("wan2.1-1.3b", 5, 81),
        ("wan2.1-1.3b", 2, 33),
        ("wan2.1-1.3b", 1.1, 17),
        ("ltx-video", 5, 121),
        ("ltx-video", 2, 49),
        ("cogvideox-2b", 3, 25),
        ("tiny", 1, 9),
    ],
)
def test_duration_maps_to_nearest_valid_frame_count(name, seconds, frames):
    params = plan(PRESETS[name], "x", duration_s=seconds)
    assert params.num_frames == frames
    assert abs(params.duration_s - seconds) <= PRESETS[name].frame_rule / PRESETS[name].fps


@pytest.mark.parametrize("name", list(PRESETS))
def test_the_advertised_duration_range_is_accepted(name):
    preset = PRESETS[name]
    # The error message shows the limits rounded to 0.1 s: a user typing them back must succeed.
    lo = plan(preset, "x", duration_s=round(preset.min_duration_s, 1))
    hi = plan(preset, "x", duration_s=round(preset.max_duration_s, 1))
    assert lo.num_frames == preset.min_frames
    assert hi.num_frames == preset.max_frames


@pytest.mark.parametrize("seconds", [60, 0.2])
def test_duration_out_of_range_says_the_allowed_range(seconds):
    with pytest.raises(InvalidParameters) as err:
        plan(PRESETS["wan2.1-1.3b"], "x", duration_s=seconds)
    assert "between 1.1 and 5.1 seconds" in str(err.value)


@pytest.mark.parametrize("seconds", [0, -3, math.nan, math.inf])
def test_nonsense_duration_is_rejected(seconds):
    with pytest.raises(InvalidParameters, match="seconds"):
        plan(PRESETS["wan2.1-1.3b"], "x", duration_s=seconds)


def test_unknown_aspect_ratio_lists_choices():
    with pytest.raises(InvalidParameters) as err:
        plan(PRESETS["ltx-video"], "x", aspect_ratio="4:3")
    assert "16:9, 9:16, 1:1" in str(err.value)


def test_seed():
    seeds = {plan(PRESETS["tiny"], "x").seed for _ in range(20)}
    assert len(seeds) > 1 and all(0 <= s <= 2**32 - 1 for s in seeds)
    assert plan(PRESETS["tiny"], "x", seed=2**32 - 1).seed == 2**32 - 1
    for bad in (-1, 2**32, True, 1.5):
        with pytest.raises(InvalidParameters, match="seed"):
            plan(PRESETS["tiny"], "x", seed=bad)


def test_prompt_cleaning():
    p = plan(PRESETS["tiny"], "  a cat\x00 on a\tboat\x07\nat night \r\n", negative_prompt="\x1bblurry")
    assert p.prompt == "a cat on a boat\nat night"
    assert p.negative_prompt == "blurry"
    for empty in ("", "   \n", "\x00\x01"):
        with pytest.raises(InvalidParameters, match="empty"):
            plan(PRESETS["tiny"], empty)
    with pytest.raises(InvalidParameters) as err:
        plan(PRESETS["tiny"], "a" * (MAX_PROMPT_CHARS + 1))
    assert str(MAX_PROMPT_CHARS) in str(err.value)
    assert plan(PRESETS["tiny"], "a" * MAX_PROMPT_CHARS).prompt == "a" * MAX_PROMPT_CHARS


def test_params_round_trip_through_json():
    params = plan(PRESETS["wan2.1-1.3b"], "a dog", negative_prompt="rain", seed=42, duration_s=3)
    again = GenerationParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert again == params
    assert params.duration_s == params.num_frames / params.fps


def test_resolve_preset_by_name_and_repo_id():
    assert resolve_preset("ltx-video") is PRESETS["ltx-video"]
    for repo, family, cls in [
        ("Wan-AI/Wan2.1-T2V-14B-Diffusers", "wan", "WanPipeline"),
        ("a-r-r-o-w/LTX-Video-0.9.1-diffusers", "ltx", "LTXPipeline"),
        ("THUDM/CogVideoX1.5-5B", "cogvideox", "CogVideoXPipeline"),
    ]:
        preset = resolve_preset(repo)
        assert (preset.name, preset.repo_id, preset.family, preset.pipeline_class) == (
            repo,
            repo,
            family,
            cls,
        )
        assert preset.needs_gpu
        params = plan(preset, "x")
        assert preset.valid_frames(params.num_frames)


def test_resolve_preset_local_folder(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "LTXConditionPipeline"}))
    preset = resolve_preset(str(tmp_path))
    assert (preset.family, preset.pipeline_class, preset.name) == (
        "ltx",
        "LTXConditionPipeline",
        str(tmp_path),
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidParameters, match="model_index.json"):
        resolve_preset(str(empty))


@pytest.mark.parametrize("model", ["someorg/some-image-model", "no such model", ""])
def test_unknown_model_lists_presets(model):
    with pytest.raises(InvalidParameters) as err:
        resolve_preset(model)
    assert "wan2.1-1.3b" in str(err.value) and "tiny" in str(err.value)


def test_cost_weight():
    preset = PRESETS["wan2.1-1.3b"]
    assert cost_weight(plan(preset, "x"), preset) == pytest.approx(1.0)
    assert cost_weight(plan(preset, "x")) == pytest.approx(1.0)
    short = plan(preset, "x", duration_s=2)  # 33 of 81 frames
    assert cost_weight(short, preset) == pytest.approx(33 / 81)
    tiny = PRESETS["tiny"]
    assert cost_weight(plan(tiny, "x"), tiny) == pytest.approx(1.0)
    assert cost_weight(plan(tiny, "x")) < 1e-3
