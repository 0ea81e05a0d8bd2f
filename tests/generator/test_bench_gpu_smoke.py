"""bench/gpu.py: the CPU smoke version runs every preset's pipeline (tiny sizes) and prints real figures;
the full-size configs build to the published parameter counts (on the meta device, no memory, no download)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import gpu  # noqa: E402


def _rows(table: str) -> list[list[str]]:
    lines = [
        line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| preset ")
    ]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_smoke_run_times_every_preset_with_and_without_options(tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "bench/gpu.py", "--smoke", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("SMOKE") and text.strip() in proc.stdout
    rows = _rows(text)
    failed = [r for r in rows if r[6].startswith("failed")]
    assert not failed, failed
    by = {(r[0], r[1]): r for r in rows}
    families = set()
    for name, arch in gpu.ARCHS.items():
        for option in ("diffusers-defaults", "fp8"):
            preset, _, step, total, peak, ratio, _ = by[(name, option)]
            assert float(step) > 0 and float(total.split()[0]) > 0 and float(peak) > 0, by[(name, option)]
            assert float(ratio) > 0
        assert by[(name, "diffusers-defaults")][5] == "1.00"
        families.add(arch.family)
    assert families == {"wan", "wan22", "ltx", "ltx2", "cogvideox"}
    # Every option has a row per preset: timed, or a note that says why not (refused here, or no speed.py yet).
    for name in gpu.ARCHS:
        for option in gpu.OPTIONS:
            if option in gpu.SMOKE_SKIP:
                continue
            r = by[(name, option)]
            assert r[3] != "—" or r[6], r


def test_full_size_configs_match_the_published_sizes() -> None:
    for name, (transformer_b, vae_b) in gpu.parameter_counts().items():
        published = gpu.PUBLISHED_B[name]
        assert abs(transformer_b - published) / published < 0.12, (name, transformer_b, published)
        assert 0.05 < vae_b < 1.5, (name, vae_b)
