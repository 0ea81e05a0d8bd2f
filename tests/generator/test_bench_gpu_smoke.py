"""bench/gpu.py: the CPU smoke version runs plain diffusers beside the worker's own path (with previews, an
option and a refused one) on tiny models and prints real figures; every row starts from diffusers'
default attention backend; the full-size configs build to the published parameter counts (on the meta
device, no memory, no download)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import fullsize  # noqa: E402
import gpu  # noqa: E402

from videobot.presets import PRESETS  # noqa: E402


def _rows(table: str) -> list[list[str]]:
    lines = [
        line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| preset ")
    ]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_smoke_run_times_diffusers_defaults_beside_the_worker_path(tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    presets = "ltx-2.3-distilled,wan2.1-14b-lightx2v"
    proc = subprocess.run(
        [sys.executable, "bench/gpu.py", "--smoke", "--runs", "1", "--presets", presets,
         "--options", "videobot+previews,fp8,attention=flash", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("SMOKE") and text.strip() in proc.stdout
    rows = _rows(text)
    assert not [r for r in rows if r[6].startswith("failed")], rows
    by = {(r[0], r[1]): r for r in rows}
    for name in presets.split(","):
        base, ours, shown = (
            by[(name, "diffusers-defaults")],
            by[(name, "videobot")],
            by[(name, "videobot+previews")],
        )
        for r in (base, ours, shown):
            assert float(r[2]) > 0 and float(r[3].split()[0]) > 0 and float(r[4]) > 0, r
            # The row before set no backend for this one (flash is refused, but the reset runs regardless).
            assert r[6].endswith("attention native"), r
        assert base[5] == "1.00" and float(ours[5]) > 0
        assert base[6].startswith(PRESETS[name].pipeline_class), base
        assert "offload=" in ours[6] and "layerwise_fp8=" in ours[6]
        assert " 0 preview(s)" not in shown[6] and "preview(s) in the last run" in shown[6]
        assert by[(name, "attention=flash")][6].startswith("refused: VIDEOBOT_ATTENTION_BACKEND=flash")
    # The worker's own path: LTX-2.3 through its condition pipeline, fp8 as auto picks it for 70-100 GB elsewhere.
    assert "vae_tiling=True" in by[("ltx-2.3-distilled", "videobot")][6]
    # The fast variant's recommended options already store fp8: the row says so instead of timing it twice.
    assert by[("wan2.1-14b-lightx2v", "fp8")][6].startswith("already on")


def test_rows_start_from_diffusers_default_attention_backend() -> None:
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    # What a model's set_attention_backend leaves behind for every model in the process.
    _AttentionBackendRegistry.set_active_backend(AttentionBackendName("_native_math"))
    assert fullsize.active_attention_backend() == "_native_math"
    fullsize.reset_process_state()
    assert fullsize.active_attention_backend() == "native"


def test_full_size_configs_match_the_published_sizes() -> None:
    for name, specs in fullsize.FULL.items():  # every part builds from its config (meta device: no memory)
        for part, (path, config) in specs.items():
            built = fullsize._cls(path)(**config) if part == "scheduler" else fullsize._empty(path, config)
            assert built is not None, (name, part)
    counts = fullsize.parameter_counts()
    assert set(counts) == set(gpu.fullsize.FULL)
    for name, billions in counts.items():
        published = fullsize.PUBLISHED_B[name]
        assert abs(billions - published) / published < 0.12, (name, billions, published)


def test_full_size_ltx23_parts_fit_together_on_the_meta_device() -> None:
    """LTX-2.3's config is written from diffusers' conversion script, not read from a download: its text
    connectors, transformer and VAE must agree on widths and shapes (a shape run, no memory, no compute)."""
    import torch

    spec = fullsize.FULL["ltx-2.3-distilled"]
    with torch.device("meta"):
        connectors = fullsize._instantiate(*spec["connectors"])
        transformer = fullsize._instantiate(*spec["transformer"])
        vae = fullsize._instantiate(*spec["vae"])
        gemma_layers = fullsize._GEMMA3_12B[1]["text_config"]["num_hidden_layers"] + 1
        mask = torch.ones(1, 1024, dtype=torch.long)
        video_text, audio_text, text_mask = connectors(torch.empty(1, 1024, 3840 * gemma_layers), mask)
        frames, height, width = 16, 16, 24  # latents of 121 frames at 768x512
        t = torch.empty(1)
        video, audio = transformer(
            hidden_states=torch.empty(1, frames * height * width, 128), audio_hidden_states=torch.empty(1, 126, 128),
            encoder_hidden_states=video_text, audio_encoder_hidden_states=audio_text, timestep=t, sigma=t,
            encoder_attention_mask=text_mask, audio_encoder_attention_mask=text_mask, num_frames=frames,
            height=height, width=width, audio_num_frames=126, return_dict=False,
        )  # fmt: skip
        decoded = vae.decode(torch.empty(1, 128, frames, height, width)).sample
    assert tuple(video.shape) == (1, 6144, 128) and tuple(audio.shape) == (1, 126, 128)
    assert tuple(decoded.shape) == (1, 3, 121, 512, 768)
