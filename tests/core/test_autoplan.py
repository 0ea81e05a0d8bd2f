"""``VIDEOBOT_MODEL=auto`` by the card's memory: a pure function, so every tier is checked on a CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from videobot.autoplan import (
    AUTO_VERBS,
    TIERS,
    explicit_memory_options,
    explicit_settings,
    plan_auto,
)
from videobot.presets import PRESETS, offered_verbs
from videobot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def settings(**env: str) -> Settings:
    return Settings(_env_file=None, **env)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("gb", "model", "offload", "fp8"),
    [
        (141, "ltx-2.3-distilled", "none", False),  # H200: everything in bf16 on the card
        (80, "ltx-2.3-distilled", "none", True),  # H100: fp8 storage, still nothing offloaded
        (48, "ltx-2.3-distilled", "model", True),
        (24, "ltx-video-0.9.8-distilled", "model", True),
        (16, "ltx-video-0.9.8-distilled", "group", True),
        (12, "ltx-video-0.9.8-distilled", "group", True),
        (8.59, "wan2.1-1.3b", "model", False),  # an 8 GiB card
    ],
)
def test_each_card_size_gets_its_tier(gb: float, model: str, offload: str, fp8: bool) -> None:
    plan = plan_auto(gb, "cuda")
    assert (plan.model, plan.options["offload"], plan.options["layerwise_fp8"]) == (model, offload, fp8)
    assert f"{gb:.0f} GB card" in plan.reason
    assert plan.gb is not None and plan.gb < gb, "the tier's own memory figure must fit its cards"
    assert plan.source


def test_big_cards_get_sound_and_previews_and_the_bot_verbs_everywhere_from_12_gb() -> None:
    big = plan_auto(80, "cuda")
    assert "audio" in PRESETS[big.model].verbs and big.options["offload"] == "none"
    assert big.options["vae_tiling"], "LTX-2 needs VAE tiling at its default size"
    assert offered_verbs("auto") == AUTO_VERBS  # what the bot offers with `auto`, whatever the card
    for tier in TIERS:
        if tier.min_gb >= 12:
            assert PRESETS[tier.preset].verbs >= AUTO_VERBS, tier
            assert not plan_auto(tier.min_gb, "cuda").problems


def test_a_card_that_cannot_serve_the_bot_says_what_to_set() -> None:
    plan = plan_auto(10, "cuda")
    assert plan.model == "wan2.1-1.3b"
    assert any("VIDEOBOT_MODEL=wan2.1-1.3b" in p and "extend" in p for p in plan.problems)
    assert any("VIDEOBOT_OFFLOAD=sequential" in p for p in plan_auto(6, "cuda").problems)


def test_no_cuda_means_tiny() -> None:
    for gb in (None, 80):
        plan = plan_auto(gb, "cpu")
        assert plan.model == "tiny" and plan.options["offload"] == "none" and not plan.problems


def test_explicit_settings_always_win() -> None:
    plan = plan_auto(80, "cuda", {"offload": "model", "layerwise_fp8": False})
    assert plan.model == "ltx-2.3-distilled"
    assert plan.options == {"offload": "model", "vae_tiling": True, "layerwise_fp8": False}
    assert "VIDEOBOT_OFFLOAD=model" in plan.reason
    named = plan_auto(80, "cuda", {"model": "wan2.1-1.3b"})
    assert named.model == "wan2.1-1.3b" and named.options["offload"] == "none"
    assert named.reason == "VIDEOBOT_MODEL is set"
    assert any("needs a CUDA GPU" in p for p in plan_auto(None, "cpu", {"model": "ltx-video"}).problems)
    assert any(
        "VIDEOBOT_OFFLOAD=model" in p for p in plan_auto(24, "cuda", {"model": "ltx-2.3-distilled"}).problems
    )


def test_only_what_the_owner_wrote_counts_as_explicit() -> None:
    assert explicit_settings(settings()) == {}
    assert explicit_memory_options(settings()) == {"offload": None, "vae_tiling": None, "layerwise_fp8": None}
    # An empty setting (as .env.example has them) is not set; an explicit default still wins over the tier.
    empty = settings(VIDEOBOT_OFFLOAD="", VIDEOBOT_FP8="", VIDEOBOT_VAE_TILING="", VIDEOBOT_MODEL="auto")
    assert explicit_settings(empty) == {}
    chosen = settings(VIDEOBOT_OFFLOAD="none", VIDEOBOT_FP8="false")
    assert explicit_settings(chosen) == {"offload": "none", "layerwise_fp8": False}
    assert plan_auto(24, "cuda", explicit_settings(chosen)).options["offload"] == "none"
    assert explicit_settings(settings(VIDEOBOT_MODEL="tiny-ltx2")) == {"model": "tiny-ltx2"}


def test_import_does_not_pull_in_torch() -> None:
    code = "import videobot.autoplan, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
