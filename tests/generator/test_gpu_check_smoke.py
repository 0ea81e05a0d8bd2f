"""bench/gpu_check.py --smoke: the GPU readiness checks run their own code on tiny models on the CPU. Every
check reports PASS or a SKIP whose reason is one a CPU justifies; the auto path makes videos (with sound)
for text, image and extend, previews leave the video unchanged, and flash is refused on the families whose
attention cannot run it, whether or not flash-attn is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Why a check may be skipped on a CPU (anything else is a failure of this test).
CPU_REASONS = (
    "a real CUDA out-of-memory needs a CUDA device",
    "offload needs a CUDA device",
    "regional compile on a CPU",
    "flash-attn is not installed",
)


def test_smoke_checks_pass_or_skip_for_a_cpu_reason(tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--smoke", "--json", str(summary_file)],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line.split(" ", 4) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    listed = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--list"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout.split()
    assert [line[1] for line in lines] == listed  # one line per check, in priority order
    status = {line[1]: line[2] for line in lines}
    detail = {line[1]: line[4] for line in lines}
    for check_id, result in status.items():
        assert result in ("PASS", "SKIP"), (check_id, detail[check_id])
        if result == "SKIP":
            assert any(reason in detail[check_id] for reason in CPU_REASONS), (check_id, detail[check_id])
    for check_id in ("auto-text", "auto-image", "auto-extend", "auto-keyframes", "previews-same-video", "variations-batch",
                     "flash-ltx", "flash-ltx2", "flash-cogvideox", "wan22-vae-tiling"):  # fmt: skip
        assert status[check_id] == "PASS", (check_id, detail[check_id])
    # auto on an 80 GB card picks LTX-2.3 with sound; extend adds the preset's frames to the clip.
    assert "ltx-2.3-distilled" in detail["auto-text"] and "sound 2 ch" in detail["auto-text"]
    assert "frames identical" in detail["previews-same-video"]
    summary = json.loads(proc.stdout.split("SUMMARY ", 1)[1])
    assert summary == json.loads(summary_file.read_text())
    assert summary["counts"]["FAIL"] == 0 and summary["counts"]["PASS"] == 10
    assert [r["id"] for r in summary["results"]] == listed


def test_no_check_starts_after_the_budget() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--smoke", "--budget", "0", "--only", "auto-text,wan22-vae-tiling"],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [line.split(" ", 4) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert [(r[1], r[2]) for r in results] == [("auto-text", "SKIP"), ("wan22-vae-tiling", "SKIP")]
    assert all(r[3] == "0.0s" and r[4].startswith("budget spent") for r in results)


def test_runs_without_pyav() -> None:
    """The GPU machine may have no PyAV: nothing the checks run encodes, so nothing may import it."""
    code = (
        "import runpy, sys; sys.modules['av'] = None; "  # `import av` now raises ImportError
        "sys.argv = ['gpu_check.py', '--smoke', '--only', 'auto-text,previews-same-video']; "
        "runpy.run_path('bench/gpu_check.py', run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert [line.split(" ", 3)[2] for line in proc.stdout.splitlines() if line.startswith("RESULT ")] == [
        "PASS",
        "PASS",
    ]
