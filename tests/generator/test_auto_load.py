"""``auto`` at load: the choice is logged once with its reason, and the owner's memory options reach the model."""

from __future__ import annotations

import logging
from pathlib import Path

from generator.machine import Machine, auto_plan
from generator.pipeline import VideoPipeline


def test_the_choice_is_logged_once_with_the_reason(caplog) -> None:  # type: ignore[no-untyped-def]
    h100 = Machine("cuda", "NVIDIA H100 80GB HBM3", 85.0)
    with caplog.at_level(logging.INFO, logger="generator.machine"):
        first = auto_plan({}, machine=h100)
        again = auto_plan({}, machine=h100)
    assert first == again and first.model == "ltx-2.3-distilled"
    lines = [r.getMessage() for r in caplog.records if "VIDEOBOT_MODEL=auto ->" in r.getMessage()]
    assert len(lines) == 1
    assert (
        "ltx-2.3-distilled (offload=none, fp8=on, vae_tiling=on)" in lines[0] and "tier >= 70 GB" in lines[0]
    )


def test_auto_on_a_cpu_loads_tiny_and_the_owners_option_reaches_it(tmp_path: Path) -> None:
    plain = VideoPipeline.load("auto", data_dir=tmp_path, device="cpu")
    assert plain.preset.name == "tiny" and not plain.pipe.vae.use_tiling
    tiled = VideoPipeline.load("auto", data_dir=tmp_path, device="cpu", vae_tiling=True)
    assert tiled.preset.name == "tiny" and tiled.pipe.vae.use_tiling
