"""LoRAs (``VIDEOBOT_LORAS`` and a preset's own): tiny random LoRAs built offline with peft change every
tiny family's video, their scale counts, loading without them gives the original back, and one that
does not fit the model stops start-up naming it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from generator.pipeline import ModelLoadError, VideoPipeline
from generator.tiny_lora import build_tiny_lora
from generator.worker import load_pipeline
from tests.generator.test_generate_cli import psnr
from videobot.presets import PRESETS, TINY_FAMILIES, LoraSpec, parse_loras, plan
from videobot.settings import Settings, SettingsError, load_settings

#: The LoRA must move the video at least as far as this (a same-video check passes at >= 40 dB; tiny
#: Wan's output barely depends on its transformer: another seed is ~40 dB away, this LoRA ~38 dB).
CHANGED_DB = 39.5
#: Loading without the LoRA again gives the original (bit-exact but for a loaded CPU's thread split).
SAME_DB = 50.0


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lora-data")


def video(vp: VideoPipeline) -> np.ndarray:
    params = plan(vp.preset, "a red boat on the sea", seed=1234)
    return vp.run(params).frames


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_a_lora_changes_the_video_and_removing_it_restores_the_original(family: str, data_dir: Path) -> None:
    name = f"tiny-{family}"
    plain = VideoPipeline.load(name, data_dir=data_dir, device="cpu")
    original = video(plain)
    lora = build_tiny_lora(plain.pipe, data_dir / "loras" / f"{family}.safetensors")
    np.testing.assert_array_equal(video(plain), original)  # building it left the model alone

    styled = video(VideoPipeline.load(name, data_dir=data_dir, device="cpu", loras=[LoraSpec(str(lora))]))
    assert psnr(original, styled) < CHANGED_DB, (
        f"the LoRA hardly changed the video: {psnr(original, styled):.1f} dB"
    )
    half = video(
        VideoPipeline.load(name, data_dir=data_dir, device="cpu", loras=[LoraSpec(str(lora), scale=0.5)])
    )
    assert psnr(styled, half) < CHANGED_DB, "the scale made no difference"

    again = video(VideoPipeline.load(name, data_dir=data_dir, device="cpu"))
    assert psnr(original, again) >= SAME_DB, (
        f"without the LoRA, another video: {psnr(original, again):.1f} dB"
    )


def test_a_lora_from_another_family_stops_start_up_naming_it(data_dir: Path) -> None:
    ltx = VideoPipeline.load("tiny-ltx", data_dir=data_dir, device="cpu")
    foreign = build_tiny_lora(ltx.pipe, data_dir / "loras" / "made-for-ltx.safetensors")
    with pytest.raises(ModelLoadError) as err:
        VideoPipeline.load("tiny-wan", data_dir=data_dir, device="cpu", loras=[LoraSpec(str(foreign))])
    text = str(err.value)
    assert "made-for-ltx.safetensors" in text and "does not fit `tiny-wan`" in text, text
    assert "VIDEOBOT_LORAS" in text


def test_a_lora_whose_layers_are_missing_stops_start_up_naming_it(data_dir: Path) -> None:
    """Layer names the model lacks (LTX's ``transformer_blocks.N`` on Wan's ``blocks.N``): peft refuses."""
    ltx = VideoPipeline.load("tiny-ltx", data_dir=data_dir, device="cpu")
    foreign = build_tiny_lora(
        ltx.pipe, data_dir / "loras" / "ltx-attention.safetensors", targets=["to_q", "to_k"]
    )
    with pytest.raises(ModelLoadError, match=r"ltx-attention\.safetensors.*does not fit `tiny-wan`"):
        VideoPipeline.load("tiny-wan", data_dir=data_dir, device="cpu", loras=[LoraSpec(str(foreign))])


def test_a_lora_diffusers_would_skip_silently_stops_start_up_naming_it(data_dir: Path) -> None:
    """A LoRA for a part the family's loader does not load (here: the text encoder) makes diffusers only
    warn and load nothing; start-up stops instead of serving the plain model."""
    from safetensors.torch import load_file, save_file

    wan = VideoPipeline.load("tiny-wan", data_dir=data_dir, device="cpu")
    made = build_tiny_lora(wan.pipe, data_dir / "loras" / "for-wan.safetensors")
    renamed = {k.replace("transformer.", "text_encoder.", 1): v for k, v in load_file(made).items()}
    other = data_dir / "loras" / "text-encoder.safetensors"
    save_file(renamed, other)
    with pytest.raises(
        ModelLoadError, match=r"text-encoder\.safetensors.*does not fit `tiny-wan`: 0 of its \d+ layers"
    ):
        VideoPipeline.load("tiny-wan", data_dir=data_dir, device="cpu", loras=[LoraSpec(str(other))])


def test_a_missing_lora_stops_start_up_naming_it(data_dir: Path) -> None:
    missing = data_dir / "loras" / "nowhere.safetensors"
    with pytest.raises(ModelLoadError, match=r"nowhere\.safetensors.*could not be read"):
        VideoPipeline.load("tiny-wan", data_dir=data_dir, device="cpu", loras=[LoraSpec(str(missing))])


def test_the_worker_loads_videobot_loras_and_a_presets_own_lora(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``VIDEOBOT_LORAS`` reaches the worker's model; a preset's declared LoRA (a fast variant) is fused
    the same way, before the owner's."""
    base = Settings(_env_file=None, VIDEOBOT_DATA_DIR=str(data_dir), VIDEOBOT_MODEL="tiny-ltx")  # type: ignore[call-arg]
    original = video(load_pipeline(base))
    lora = build_tiny_lora(load_pipeline(base).pipe, data_dir / "loras" / "worker.safetensors")
    with_env = load_pipeline(base.model_copy(update={"loras": parse_loras(f"{lora}@1.0")}))
    styled = video(with_env)
    assert psnr(original, styled) < CHANGED_DB

    monkeypatch.setitem(
        PRESETS, "tiny-ltx", dataclasses.replace(PRESETS["tiny-ltx"], loras=(LoraSpec(str(lora)),))
    )
    from_preset = video(load_pipeline(base))
    assert psnr(styled, from_preset) >= SAME_DB  # the same LoRA, the same video


def test_videobot_loras_syntax() -> None:
    assert parse_loras(" owner/repo:style.safetensors@0.8, /srv/fast.safetensors ,") == (
        LoraSpec("owner/repo", "style.safetensors", 0.8),
        LoraSpec("/srv/fast.safetensors", None, 1.0),
    )
    assert parse_loras("") == ()
    assert str(LoraSpec("owner/repo", "style.safetensors", 0.8)) == "owner/repo:style.safetensors@0.8"
    for bad, why in (
        ("a/b@strong", "after `@` comes the scale"),
        ("a/b@99", "between -10 and 10"),
        ("a/b:", "SOURCE"),
    ):
        with pytest.raises(SettingsError, match="VIDEOBOT_LORAS") as err:
            load_settings(_env_file=None, VIDEOBOT_LORAS=bad)
        assert why in str(err.value), str(err.value)


def test_the_fast_variant_declares_its_lora_and_its_own_steps() -> None:
    fast = PRESETS["wan2.1-14b-lightx2v"]
    assert fast.loras == (
        LoraSpec("lightx2v/Wan2.1-Distill-Loras", "wan2.1_t2v_14b_lora_rank64_lightx2v_4step.safetensors"),
    )
    assert (fast.steps, fast.guidance) == (4, 1.0)


def test_the_worker_stops_at_start_naming_a_lora_that_does_not_fit(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from generator import worker
    from videobot.runner import MODEL_LOAD_FAILED

    ltx = VideoPipeline.load("tiny-ltx", data_dir=data_dir, device="cpu")
    foreign = build_tiny_lora(ltx.pipe, data_dir / "loras" / "not-for-wan.safetensors")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        VIDEOBOT_DATA_DIR=str(data_dir),
        VIDEOBOT_MODEL="tiny-wan",
        VIDEOBOT_LORAS=f"{foreign}@0.7",
        DATABASE_URL=f"sqlite+aiosqlite:///{data_dir / 'never.db'}",
    )
    assert worker.main(settings) == MODEL_LOAD_FAILED
    err = capsys.readouterr().err
    assert "not-for-wan.safetensors@0.7" in err and "does not fit `tiny-wan`" in err, err
