"""``videobot check``: the real CLI, on this CPU machine, with ``--assume-gpu-gb`` for the cards it lacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LTX23 = "diffusers/LTX-2.3-Distilled-Diffusers"


def check(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIDEOBOT_", "DATABASE_URL", "DISCORD_", "HF_"))
    }
    clean.update(
        {
            "VIDEOBOT_DATA_DIR": str(tmp_path / "data"),
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_OFFLINE": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "VIDEOBOT_LOG_LEVEL": "WARNING",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "videobot.cli", "check", *args],
        cwd=tmp_path,  # no .env there
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
    )


def lines(out: str) -> dict[str, str]:
    """``label  text`` lines by label."""
    return {
        line[:18].strip(): line[18:].strip() for line in out.splitlines() if not line.startswith("PROBLEM")
    }


def fake_cached_model(hf_home: Path, repo_id: str) -> None:
    """A Hugging Face cache entry laid out as ``huggingface_hub`` writes it (blob, snapshot link, ref)."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc123").write_text('{"_class_name": "LTX2Pipeline"}')
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model_index.json").symlink_to("../../blobs/abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_an_80_gb_card_gets_sound_with_nothing_offloaded_and_the_licence_is_named(tmp_path: Path) -> None:
    r = check(["--assume-gpu-gb", "80"], tmp_path)
    got = lines(r.stdout)
    assert got["GPU"].startswith("assumed 80 GB card")
    assert got["model"].startswith("ltx-2.3-distilled: 80 GB card")
    assert got["memory options"].startswith("offload=none, fp8=on, vae_tiling=on")
    assert got["previews"].startswith("on")
    assert "USD 10M" in got["licence"]
    assert got["versions"].startswith("torch ") and "diffusers 0.42" in got["versions"]
    assert "installed: native" in got["attention"] and "runs native" in got["attention"]
    # Not downloaded, and this machine is offline: it will not work, and the fix is one line.
    assert "not in the cache" in got["model files"] and "~70 GB" in got["model files"]
    assert r.returncode == 1, r.stdout + r.stderr
    # (A second problem is added where this machine's disk has less free than the download needs.)
    (problem,) = [line for line in r.stdout.splitlines() if line.startswith("PROBLEM") and "OFFLINE" in line]
    assert LTX23 in problem and "unset it once" in problem


def test_once_the_model_is_in_the_cache_the_check_passes(tmp_path: Path) -> None:
    fake_cached_model(tmp_path / "hf", LTX23)
    r = check(["--assume-gpu-gb", "141"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    got = lines(r.stdout)
    assert got["model files"].startswith("in the Hugging Face cache")
    assert got["memory options"].startswith("offload=none, fp8=off")  # 141 GB: all of it in bf16
    assert r.stdout.rstrip().endswith("ok: this will work")


def test_a_24_gb_card_and_an_owner_setting_that_wins(tmp_path: Path) -> None:
    got = lines(check(["--assume-gpu-gb", "24"], tmp_path).stdout)
    assert got["model"].startswith("ltx-video-0.9.8-distilled")
    assert got["memory options"].startswith("offload=model, fp8=on")
    # Model offload keeps previews: the latents are projected to RGB without the offloaded VAE.
    assert got["previews"].startswith("on") and "latent->RGB factors for `ltx`" in got["previews"]
    mine = check(["--assume-gpu-gb", "24"], tmp_path, VIDEOBOT_OFFLOAD="none")
    got = lines(mine.stdout)
    assert got["memory options"].startswith("offload=none, fp8=on")
    assert "VIDEOBOT_OFFLOAD=none replaces" in got["model"]
    assert got["previews"].startswith("on") and "VAE" in got["previews"]


def test_flash_with_an_ltx_2_model_fails_with_the_setting_to_change(tmp_path: Path) -> None:
    fake_cached_model(tmp_path / "hf", LTX23)
    r = check(["--assume-gpu-gb", "80"], tmp_path, VIDEOBOT_ATTENTION_BACKEND="flash")
    assert r.returncode == 1
    (problem,) = [line for line in r.stdout.splitlines() if line.startswith("PROBLEM")]
    assert "VIDEOBOT_ATTENTION_BACKEND=flash" in problem and "ltx2" in problem and "=native" in problem


def test_on_a_cpu_auto_is_tiny_and_run_renders_two_steps(tmp_path: Path) -> None:
    r = check(["--run"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    got = lines(r.stdout)
    assert got["GPU"].startswith("none")
    assert got["model"].startswith("tiny: no CUDA GPU")
    assert got["licence"].startswith("none")
    steps = got["2-step run"]
    assert steps.startswith("64x32x9: steps ") and steps.count(",") >= 1
    assert "GB of process memory" in got["peak memory"]


def test_a_gpu_model_on_a_cpu_or_a_bad_number_fails(tmp_path: Path) -> None:
    r = check([], tmp_path, VIDEOBOT_MODEL="ltx-video")
    assert r.returncode == 1
    assert any("needs a CUDA GPU" in line and "VIDEOBOT_MODEL=tiny" in line for line in r.stdout.splitlines())
    bad = check(["--assume-gpu-gb", "lots"], tmp_path)
    assert bad.returncode == 2 and "--assume-gpu-gb takes a number of GB" in bad.stderr
    both = check(["--assume-gpu-gb", "80", "--run"], tmp_path)
    assert both.returncode == 2 and "--run renders on this machine" in both.stderr


@pytest.mark.parametrize("args", [["--help"], ["check", "--help"]])
def test_help_names_the_check(args: list[str], tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "videobot.cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0
    assert ("--assume-gpu-gb" in r.stdout) and ("check" in r.stdout)
